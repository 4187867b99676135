package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFiles creates files (name -> contents) in a new temporary folder and
// returns the folder.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const fullApp = `app: web
build:
  command: go build -o bin/web .
  output: bin
  env: {CGO_ENABLED: "0"}
  exclude: [tmp]
run:
  command: ./web --flag
  env:
    NODE_ENV: production
  env_from_host: [MONGO_URL]
  secrets_file: secrets.env
  settings: settings.json
  root_url: https://app.example.com
  stop_signal: INT
  stop_timeout: 20s
health:
  path: /healthz
  interval: 5s
  timeout: 2s
  healthy_threshold: 2
  unhealthy_threshold: 4
  grace: 90s
  statuses: "200,204,300-302"
group:
  min: 2
  max: 6
  desired: 3
  max_replacing: 1
balancer:
  listen: 0.0.0.0:8081
  algorithm: p2c
  sticky:
    cookie: shoal_sticky
    ttl: 1h
    sockjs_prefixes: [/sockjs]
  drain_timeout: 45s
  slow_start: 10s
admin:
  listen: 127.0.0.1:9191
data_dir: state
keep_releases: 3
`

func TestParseFullConfig(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"shoal.yaml":    fullApp,
		"secrets.env":   "# comment\nexport API_KEY=k3y-value-123\nQUOTED=\"a b\\n\"\nSINGLE='x=y'\n\nEMPTY=\n",
		"settings.json": "{\n  \"public\": {\"a\": 1},\n  \"private\": {\"token\": \"tok-secret-999\"}\n}\n",
	})
	a, err := Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if a.Name != "web" || a.Dir != dir || a.File != filepath.Join(dir, "shoal.yaml") {
		t.Errorf("name/dir/file = %q %q %q", a.Name, a.Dir, a.File)
	}
	if a.Build.Command != "go build -o bin/web ." || a.Build.Output != filepath.Join(dir, "bin") || a.Build.Env["CGO_ENABLED"] != "0" {
		t.Errorf("build = %+v", a.Build)
	}
	r := a.Run
	if r.Command != "./web --flag" || r.SecretsFile != filepath.Join(dir, "secrets.env") || r.Settings != filepath.Join(dir, "settings.json") ||
		r.RootURL != "https://app.example.com" || r.StopSignal != "SIGINT" || r.Signal().String() != "interrupt" || r.StopTimeout.D() != 20*time.Second {
		t.Errorf("run = %+v", r)
	}
	h := a.Health
	if h.Path != "/healthz" || h.Interval.D() != 5*time.Second || h.Timeout.D() != 2*time.Second || h.HealthyThreshold != 2 ||
		h.UnhealthyThreshold != 4 || h.Grace.D() != 90*time.Second || h.Statuses.String() != "200,204,300-302" ||
		!h.Statuses.Contains(301) || h.Statuses.Contains(201) {
		t.Errorf("health = %+v (statuses %s)", h, h.Statuses)
	}
	if a.Group != (AppGroup{Min: 2, Max: 6, Desired: 3, MaxReplacing: 1}) {
		t.Errorf("group = %+v", a.Group)
	}
	b := a.Balancer
	if b.Listen != "0.0.0.0:8081" || b.Algorithm != AlgorithmP2C || b.Sticky.Cookie != "shoal_sticky" || b.Sticky.TTL.D() != time.Hour ||
		len(b.Sticky.SockJSPrefixes) != 1 || b.DrainTimeout.D() != 45*time.Second || b.SlowStart.D() != 10*time.Second {
		t.Errorf("balancer = %+v", b)
	}
	if a.Admin.Listen != "127.0.0.1:9191" || a.DataDir != filepath.Join(dir, "state") || a.KeepReleases != 3 {
		t.Errorf("admin/data_dir/keep = %q %q %d", a.Admin.Listen, a.DataDir, a.KeepReleases)
	}
	wantExclude := []string{filepath.Join(dir, "tmp"), filepath.Join(dir, "state"), filepath.Join(dir, "secrets.env"), filepath.Join(dir, "settings.json")}
	if strings.Join(a.Exclude(), "|") != strings.Join(wantExclude, "|") {
		t.Errorf("Exclude = %v", a.Exclude())
	}

	env, err := a.Env(func(k string) (string, bool) {
		if k == "MONGO_URL" {
			return "mongodb://user:pw-secret@db/app", true
		}
		return "", false
	})
	if err != nil {
		t.Fatalf("Env: %v", err)
	}
	want := []string{
		"API_KEY=k3y-value-123",
		"EMPTY=",
		`METEOR_SETTINGS={"public":{"a":1},"private":{"token":"tok-secret-999"}}`,
		"MONGO_URL=mongodb://user:pw-secret@db/app",
		"NODE_ENV=production",
		"QUOTED=a b\n",
		"ROOT_URL=https://app.example.com",
		"SINGLE=x=y",
	}
	if got := env.Environ(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Environ:\n got %q\nwant %q", got, want)
	}
	wantRed := []string{"API_KEY=[redacted]", "EMPTY=[redacted]", "METEOR_SETTINGS=[redacted]", "MONGO_URL=[redacted]",
		"NODE_ENV=production", "QUOTED=[redacted]", "ROOT_URL=https://app.example.com", "SINGLE=[redacted]"}
	if got := env.Redacted(); strings.Join(got, "|") != strings.Join(wantRed, "|") {
		t.Errorf("Redacted:\n got %q\nwant %q", got, wantRed)
	}
	out := env.Redact("boot failed: API_KEY=k3y-value-123 url=mongodb://user:pw-secret@db/app production")
	if out != "boot failed: API_KEY=[redacted] url=[redacted] production" {
		t.Errorf("Redact = %q", out)
	}

	fp := a.Fingerprint(env)
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != 71 || fp != a.Fingerprint(env) {
		t.Errorf("Fingerprint = %q", fp)
	}
	if strings.Contains(fp, "k3y") {
		t.Error("fingerprint leaks a value")
	}
	env2 := append(Env(nil), env...)
	env2[0].Value = "other"
	if a.Fingerprint(env2) == fp {
		t.Error("fingerprint ignores a changed secret")
	}
	b2 := *a
	b2.Run.Command = "./web"
	if b2.Fingerprint(env) == fp {
		t.Error("fingerprint ignores the command")
	}
	if a.Settings() == "" || a.OutputDir() != filepath.Join(dir, "bin") {
		t.Errorf("Settings %q, OutputDir %q", a.Settings(), a.OutputDir())
	}
}

func TestParseDefaults(t *testing.T) {
	dir := writeFiles(t, nil)
	a, err := Parse("shoal.yaml", []byte("app: api\nrun:\n  command: ./api\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Build != nil || a.OutputDir() != dir {
		t.Errorf("build = %+v, output %q", a.Build, a.OutputDir())
	}
	want := App{
		Name:  "api",
		Run:   AppRun{Command: "./api", RootURL: "http://127.0.0.1:8080", StopSignal: "SIGTERM", StopTimeout: Duration(10 * time.Second)},
		Group: AppGroup{Min: 1, Max: 1, Desired: 1, MaxReplacing: 2},
		Balancer: AppBalancer{Listen: DefaultBalancerListen, Algorithm: AlgorithmRoundRobin,
			DrainTimeout: Duration(30 * time.Second)},
		Admin:        AppAdmin{Listen: DefaultAdminListen},
		DataDir:      filepath.Join(dir, ".shoal"),
		KeepReleases: 5,
	}
	if a.Name != want.Name || a.Group != want.Group || a.Admin != want.Admin || a.DataDir != want.DataDir ||
		a.KeepReleases != want.KeepReleases || a.Balancer.Listen != want.Balancer.Listen ||
		a.Balancer.Algorithm != want.Balancer.Algorithm || a.Balancer.DrainTimeout != want.Balancer.DrainTimeout ||
		a.Balancer.Sticky != nil || a.Run.RootURL != want.Run.RootURL || a.Run.StopSignal != "SIGTERM" ||
		a.Run.StopTimeout != want.Run.StopTimeout {
		t.Errorf("defaults:\n got %+v\nwant %+v", *a, want)
	}
	h := a.Health
	if h.Path != "/" || h.Interval.D() != 2*time.Second || h.Timeout.D() != time.Second || h.HealthyThreshold != 1 ||
		h.UnhealthyThreshold != 3 || h.Grace.D() != 60*time.Second || h.Statuses.String() != "200-399" {
		t.Errorf("health defaults = %+v", h)
	}
	// desired written alone: max follows it.
	a, err = Parse("shoal.yaml", []byte("app: api\nrun: {command: x}\ngroup: {desired: 4}\nbalancer: {listen: ':80'}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Group.Min != 1 || a.Group.Max != 4 || a.Run.RootURL != "http://localhost" {
		t.Errorf("group %+v, root_url %q", a.Group, a.Run.RootURL)
	}
	env, err := a.Env(func(string) (string, bool) { return "", false })
	if err != nil || strings.Join(env.Environ(), "|") != "ROOT_URL=http://localhost" {
		t.Errorf("env = %v, %v", env, err)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		files map[string]string
		want  []string
	}{
		{"empty", "", nil, []string{"shoal.yaml:1:1: the file is empty"}},
		{"syntax", "app: web\nrun: [\n", nil, []string{"shoal.yaml:2:1: did not find expected node content"}},
		{"required", "group: {min: 1}\n", nil, []string{
			"shoal.yaml:1:1: app: the app name is required (lowercase letters, digits and dashes)",
			"shoal.yaml:1:1: run.command: the command that starts one instance is required (it must listen on $PORT)",
		}},
		{"names and types", "app: Web_App\nrun:\n  command: x\n  stop_timeout: 10\nkeep_releases: many\nextra: 1\n", nil, []string{
			`shoal.yaml:1:6: app: invalid app name "Web_App" (1-63 lowercase letters, digits and dashes, not starting or ending with a dash)`,
			`shoal.yaml:4:17: run.stop_timeout: a duration needs a unit, such as 500ms, 5s or 2m`,
			`shoal.yaml:5:16: keep_releases: expected a whole number, got "many"`,
			`shoal.yaml:6:1: extra: unknown key "extra" (known keys: app, runtime, build, run, health, group, balancer, admin, data_dir, keep_releases, deploy, autoscale)`,
		}},
		{"group bounds", "app: w\nrun: {command: x}\ngroup:\n  min: 3\n  max: 2\n  max_replacing: 0\n", nil, []string{
			"shoal.yaml:4:8: group.min: group.min (3) is larger than group.max (2)",
			"shoal.yaml:6:18: group.max_replacing: must be at least 1, got 0",
		}},
		{"desired outside", "app: w\nrun: {command: x}\ngroup: {min: 1, max: 4, desired: 5}\n", nil, []string{
			"shoal.yaml:3:34: group.desired: must be between group.min and group.max (1-4), got 5",
		}},
		{"health", "app: w\nrun: {command: x}\nhealth:\n  path: healthz\n  interval: 0s\n  timeout: -1s\n  healthy_threshold: 0\n  unhealthy_threshold: -2\n  grace: -5s\n  statuses: 200-100\n", nil, []string{
			`shoal.yaml:4:9: health.path: must start with /, got "healthz"`,
			`shoal.yaml:5:13: health.interval: must be more than 0, got 0s`,
			`shoal.yaml:6:12: health.timeout: must be more than 0, got -1s`,
			`shoal.yaml:7:22: health.healthy_threshold: must be at least 1, got 0`,
			`shoal.yaml:8:24: health.unhealthy_threshold: must be at least 1, got -2`,
			`shoal.yaml:9:10: health.grace: must not be negative, got -5s`,
			`shoal.yaml:10:13: health.statuses: invalid status range "200-100": the first code is larger than the last`,
		}},
		{"balancer and admin", "app: w\nrun: {command: x, stop_signal: SIGKILL}\nbalancer:\n  listen: nowhere\n  algorithm: random\n  sticky: {cookie: 'a b', sockjs_prefixes: [sockjs]}\n  drain_timeout: 0s\nadmin: {listen: '127.0.0.1:99999'}\n", nil, []string{
			`shoal.yaml:2:32: run.stop_signal: unknown stop signal "SIGKILL" (use SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 or SIGUSR2)`,
			`shoal.yaml:4:11: balancer.listen: invalid address "nowhere" (use host:port, such as 127.0.0.1:8080 or :80)`,
			`shoal.yaml:5:14: balancer.algorithm: unknown algorithm "random" (use round_robin, least_requests or p2c)`,
			"shoal.yaml:6:20: balancer.sticky.cookie: invalid cookie name \"a b\" (letters, digits and !#$%&'*+-.^_`|~)",
			`shoal.yaml:6:45: balancer.sticky.sockjs_prefixes[0]: must start with /, got "sockjs"`,
			`shoal.yaml:7:18: balancer.drain_timeout: must be more than 0, got 0s`,
			`shoal.yaml:8:17: admin.listen: invalid port "99999" in "127.0.0.1:99999"`,
		}},
		{"same address", "app: w\nrun: {command: x}\nbalancer: {listen: '127.0.0.1:7000'}\nadmin: {listen: '127.0.0.1:7000'}\n", nil, []string{
			"shoal.yaml:4:17: admin.listen: the admin API and the balancer both listen on 127.0.0.1:7000",
		}},
		{"env names", "app: w\nrun:\n  command: x\n  root_url: ftp://x\n  env: {PORT: '1', 1BAD: x, SHOAL_X: y, OK: z}\n  env_from_host: [OK, ROOT_URL]\n", nil, []string{
			`shoal.yaml:4:13: run.root_url: must be an absolute http:// or https:// URL, got "ftp://x"`,
			`shoal.yaml:5:15: run.env.PORT: PORT is reserved: it is set by Shoal to the port each instance must listen on`,
			`shoal.yaml:5:26: run.env.1BAD: invalid variable name "1BAD" (use letters, digits and _, not starting with a digit)`,
			`shoal.yaml:5:38: run.env.SHOAL_X: SHOAL_X is reserved: names starting with SHOAL_ belong to Shoal`,
			`shoal.yaml:6:19: run.env_from_host[0]: OK is already set in run.env`,
			`shoal.yaml:6:23: run.env_from_host[1]: ROOT_URL is reserved: set run.root_url instead`,
		}},
		{"missing files", "app: w\nbuild: {output: dist}\nrun:\n  command: x\n  secrets_file: nope.env\n  settings: nope.json\n", nil, []string{
			"shoal.yaml:2:17: build.output: dist does not exist (with no build.command, the output must already be there)",
			"shoal.yaml:5:17: run.secrets_file: cannot read the secrets file: nope.env: no such file or directory",
			"shoal.yaml:6:13: run.settings: cannot read the settings file: nope.json: no such file or directory",
		}},
		{"output is a file", "app: w\nbuild: {output: f}\nrun: {command: x}\n", map[string]string{"f": "x"}, []string{
			"shoal.yaml:2:17: build.output: f is not a directory",
		}},
		{"bad secrets and settings", "app: w\nrun:\n  command: x\n  env: {DUP: a}\n  secrets_file: s.env\n  settings: m.json\n",
			map[string]string{
				"s.env":  "GOOD=ok\nsuper-secret-token-value\nPORT=8\n2X=hidden-value-1\nQ=\"unterminated-secret\nGOOD=again\nDUP=hidden-value-2\nE=\"bad\\qescape\"\n",
				"m.json": "{\"a\": 1,\n  \"b\": tru\n}",
			}, []string{
				"s.env:2:1: expected NAME=value (the line is not shown: it may hold a secret)",
				"s.env:3:1: PORT: PORT is reserved: it is set by Shoal to the port each instance must listen on",
				"s.env:4:1: invalid variable name before '=' (use letters, digits and _, not starting with a digit)",
				"s.env:5:1: Q: unterminated quote (the value is not shown)",
				"s.env:6:1: GOOD: GOOD is already set on line 1",
				`s.env:8:1: E: unknown escape in a double-quoted value (known: \n \t \r \" \\ \$) (the value is not shown)`,
				"s.env:7:1: DUP: DUP is already set in run.env",
				"m.json:2:11: invalid JSON: unexpected character in literal true (expecting 'e')",
			}},
		{"settings conflict", "app: w\nrun:\n  command: x\n  env: {METEOR_SETTINGS: '{}'}\n  settings: m.json\n", map[string]string{"m.json": "{}"}, []string{
			"shoal.yaml:5:13: run.settings: METEOR_SETTINGS is also set in run.env; keep one",
		}},
		{"keep and data dir", "app: w\nrun: {command: x}\ndata_dir: ''\nkeep_releases: 0\ngroup: {max: 5000}\n", nil, []string{
			"shoal.yaml:3:11: data_dir: must not be empty (default \".shoal\")",
			"shoal.yaml:4:16: keep_releases: must be at least 1 (the current release), got 0",
			"shoal.yaml:5:14: group.max: must be at most 1000, got 5000",
		}},
		{"not a mapping", "- app: w\n", nil, []string{`shoal.yaml:1:1: expected a mapping, got a list`}},
		{"wrong shapes", "app: w\nrun: ./x\nhealth: [a]\ngroup: {min: x}\n", nil, []string{
			`shoal.yaml:2:6: run: expected a mapping, got "./x"`,
			`shoal.yaml:3:9: health: expected a mapping, got a list`,
			`shoal.yaml:4:14: group.min: expected a whole number, got "x"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			a, err := Parse("shoal.yaml", []byte(tt.yaml), dir)
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Parse = %+v, %v; want Problems", a, err)
			}
			if a != nil {
				t.Errorf("got an App along with problems")
			}
			got := strings.Split(probs.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			for _, secret := range []string{"super-secret-token-value", "hidden-value", "unterminated-secret", "bad\\q"} {
				if strings.Contains(probs.Error(), secret) {
					t.Errorf("problems leak a secret value %q", secret)
				}
			}
		})
	}
}

func TestEnvMissingHostVariable(t *testing.T) {
	a, err := Parse("shoal.yaml", []byte("app: w\nrun:\n  command: x\n  env_from_host:\n    - A\n    - B\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Env(func(k string) (string, bool) { return "value-of-" + k, k == "A" })
	if err == nil || err.Error() != "shoal.yaml:6:7: run.env_from_host[1]: B is not set in shoal's environment" {
		t.Fatalf("Env error = %v", err)
	}
}

func TestRedactShortAndNested(t *testing.T) {
	env := Env{{Name: "A", Value: "abc", Secret: true}, {Name: "B", Value: "token", Secret: true},
		{Name: "C", Value: "token-long", Secret: true}, {Name: "D", Value: "public", Secret: false}}
	if got := env.Redact("abc token-long token public"); got != "abc [redacted] [redacted] public" {
		t.Errorf("Redact = %q", got)
	}
}

func TestAppStatuses(t *testing.T) {
	var s AppStatuses
	for _, bad := range []string{"", "abc", "99", "600", "200-", "300-200", "200,,204"} {
		if err := s.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := s.UnmarshalText([]byte(" 200 , 204,300-399")); err != nil {
		t.Fatal(err)
	}
	if s.String() != "200,204,300-399" || !s.Contains(204) || s.Contains(203) || !s.Contains(399) || s.Contains(400) {
		t.Errorf("statuses %s", s)
	}
	var zero AppStatuses
	if !zero.Contains(200) || zero.Contains(404) || zero.String() != "200-399" {
		t.Errorf("zero value %s", zero)
	}
}

func TestSecretValueForms(t *testing.T) {
	vars, probs := parseSecrets("s.env", []byte("A = spaced value \r\nexport B='it''s'\nC=\"tab\\there \\\"q\\\" \\$HOME\"\nD=#not-a-comment\n   # indented comment\n"))
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	want := map[string]string{"A": "spaced value", "B": "it''s", "C": "tab\there \"q\" $HOME", "D": "#not-a-comment"}
	if len(vars) != len(want) {
		t.Fatalf("vars = %v", vars)
	}
	for _, v := range vars {
		if want[v.Name] != v.Value || !v.Secret {
			t.Errorf("%s = %q, want %q", v.Name, v.Value, want[v.Name])
		}
	}
}

func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "secrets.env"), []byte("A=1\nB='two'\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "settings.json"), []byte(`{"public":{}}`), 0o600)
	os.Mkdir(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "sticky.key"), []byte("0123456789abcdef\n"), 0o600)
	f.Add(fullApp)
	f.Add("app: w\nrun: {command: x}\n")
	f.Add("app: w\nrun: {command: x, secrets_file: secrets.env, settings: settings.json}\nbuild: {output: bin}\n")
	f.Add("app: w\nrun: {command: x}\ngroup: {min: 2, max: 1, desired: 9}\nhealth: {statuses: '200,300-'}\n")
	f.Add("app: &a w\nrun: {command: *a}\nbalancer: {listen: '[::1]:0', sticky: {cookie: c}}\n")
	f.Add("app: w\nrun: {command: x}\nbalancer: {sticky: {cookie: c, secret_file: sticky.key}}\n")
	f.Add("app: w\nrun: {command: x}\nbalancer: {sticky: {secret_file: secrets.env}}\nhealth: {host: 'a b'}\n")
	f.Add("app: w\nrun: {command: x}\nhealth: {host: app.example.com, path: /h}\n")
	f.Fuzz(func(t *testing.T, src string) {
		a, err := Parse("f.yaml", []byte(src), dir)
		if (a == nil) == (err == nil) {
			t.Fatalf("Parse returned app %v and error %v", a != nil, err)
		}
		if err != nil {
			var probs Problems
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("error is not Problems: %v", err)
			}
			for _, p := range probs {
				if p.Msg == "" {
					t.Fatalf("empty problem %+v", p)
				}
			}
			return
		}
		// A valid App is internally consistent.
		g := a.Group
		if g.Min < 0 || g.Min > g.Max || g.Desired < g.Min || g.Desired > g.Max || g.MaxReplacing < 1 {
			t.Fatalf("invalid group accepted: %+v", g)
		}
		if a.Health.Timeout > a.Health.Interval || a.Health.HealthyThreshold < 1 || a.KeepReleases < 1 {
			t.Fatalf("invalid health or keep accepted: %+v %d", a.Health, a.KeepReleases)
		}
		env, err := a.Env(func(string) (string, bool) { return "h", true })
		if err != nil {
			t.Fatalf("Env: %v", err)
		}
		seen := map[string]bool{}
		for _, v := range env {
			if seen[v.Name] || v.Name == "PORT" {
				t.Fatalf("env has %s twice or reserved", v.Name)
			}
			seen[v.Name] = true
		}
		if a.Fingerprint(env) != a.Fingerprint(env) {
			t.Fatal("fingerprint not stable")
		}
		if s := a.Balancer.Sticky; s != nil && s.SecretFile != "" && len(s.Secret()) < minStickySecret {
			t.Fatalf("sticky secret_file accepted with a %d-byte key", len(s.Secret()))
		}
	})
}

// TestExamplesLoad keeps the example apps' shoal.yaml files valid.
func TestExamplesLoad(t *testing.T) {
	for _, name := range []string{"meteor-like", "goapp"} {
		a, err := Load(filepath.Join("..", "..", "examples", name, "shoal.yaml"))
		if err != nil {
			t.Errorf("examples/%s: %v", name, err)
			continue
		}
		if a.Name != name || a.Health.Path != "/healthz" {
			t.Errorf("examples/%s: name %q, health path %q", name, a.Name, a.Health.Path)
		}
	}
}

func TestConversions(t *testing.T) {
	dir := writeFiles(t, nil)
	a, err := Parse("shoal.yaml", []byte("app: w\nrun: {command: x}\nhealth: {path: /h, statuses: '200,204'}\nbalancer: {algorithm: least_requests, sticky: {cookie: c, ttl: 1m, sockjs_prefixes: [/sockjs]}}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	s := a.Health.Spec()
	if err := s.Validate(); err != nil {
		t.Fatalf("health spec invalid: %v", err)
	}
	if s.Path != "/h" || s.Interval != 2*time.Second || s.HealthyThreshold != 1 || len(s.Statuses) != 2 || s.Statuses[1].Min != 204 {
		t.Errorf("spec = %+v", s)
	}
	if a.Balancer.PoolAlgorithm().String() != "least_requests" {
		t.Errorf("algorithm %v", a.Balancer.PoolAlgorithm())
	}
	st := a.Balancer.PoolSticky([]byte("0123456789abcdef"))
	if st.Cookie != "c" || st.TTL != time.Minute || st.SockJSPrefixes[0] != "/sockjs" || len(st.Secret) != 16 {
		t.Errorf("sticky = %+v", st)
	}
}
