package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
)

// mupFolder makes a Meteor app folder with the mup.js fixture
// testdata/mup/<fixture>.js in its .deploy folder (and settings.json
// beside it when settings), as `mup init` lays it out. It returns the app
// folder and the path of mup.js.
func mupFolder(t *testing.T, fixture string, settings bool) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed")
	}
	js, err := os.ReadFile(filepath.Join("testdata", "mup", fixture+".js"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{".meteor/release": "METEOR@3.0.4\n", ".deploy/mup.js": string(js)}
	if settings {
		s, err := os.ReadFile(filepath.Join("testdata", "mup", "settings.json"))
		if err != nil {
			t.Fatal(err)
		}
		files[".deploy/settings.json"] = string(s)
	}
	dir := initFolder(t, "app", files)
	return dir, filepath.Join(dir, ".deploy", "mup.js")
}

// importMup runs `shoal import mup` and loads what it wrote.
func importMup(t *testing.T, dir string, args ...string) (*config.App, string, string) {
	t.Helper()
	code, out, errs := runCLI(t, append([]string{"import", "mup"}, args...)...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	a, err := config.Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		text, _ := os.ReadFile(filepath.Join(dir, "shoal.yaml"))
		t.Fatalf("imported shoal.yaml does not load: %v\n%s", err, text)
	}
	report, err := os.ReadFile(filepath.Join(dir, mupReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out, string(report)) {
		t.Errorf("stdout does not end with the report:\n%s", out)
	}
	return a, out, string(report)
}

// reportLine returns the report line of path (a key of mup.js), or "".
func reportLine(report, section, path string) string {
	_, after, ok := strings.Cut(report, "\n"+section)
	if !ok {
		return ""
	}
	if i := strings.Index(after, "\n\n"); i >= 0 {
		after = after[:i]
	}
	for _, l := range strings.Split(after, "\n") {
		if strings.HasPrefix(l, "  "+path+": ") {
			return l
		}
	}
	return ""
}

func TestImportMupMinimal(t *testing.T) {
	dir, mupJS := mupFolder(t, "minimal", true)
	a, out, report := importMup(t, dir, mupJS)
	if a.Name != "chat" || a.Runtime != config.RuntimeProcess || a.Run.Command != "node main.js" {
		t.Errorf("app %q runtime %q command %q", a.Name, a.Runtime, a.Run.Command)
	}
	wantBuild := "rm -rf .meteor/local/shoal-build && meteor npm install && meteor build .meteor/local/shoal-build --directory --server-only && cd .meteor/local/shoal-build/bundle/programs/server && meteor npm install --omit=dev"
	if a.Build == nil || a.Build.Command != wantBuild || a.Build.Output != filepath.Join(dir, ".meteor/local/shoal-build/bundle") {
		t.Errorf("build %+v", a.Build)
	}
	if a.Run.RootURL != "https://chat.example.org" {
		t.Errorf("root_url %q", a.Run.RootURL)
	}
	want := map[string]string{"MONGO_URL": "mongodb://db.internal:27017/chat", "HTTP_FORWARDED_COUNT": "1", "NODE_ENV": "production"}
	if len(a.Run.Env) != len(want) {
		t.Errorf("env %v, want %v", a.Run.Env, want)
	}
	for k, v := range want {
		if a.Run.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, a.Run.Env[k], v)
		}
	}
	if len(a.Run.EnvFromHost) != 0 || a.Run.SecretsFile != "" {
		t.Errorf("env_from_host %v, secrets %q: mup.js sets MONGO_URL and no secret", a.Run.EnvFromHost, a.Run.SecretsFile)
	}
	if exists(filepath.Join(dir, mupSecretsFile)) {
		t.Error("a secrets file was written with no secret")
	}
	if a.Settings() != `{"public":{"theme":"dark"},"private":{"apiKey":"settings-secret-123"}}` ||
		a.Run.Settings != filepath.Join(dir, ".deploy", "settings.json") {
		t.Errorf("settings %q from %q", a.Settings(), a.Run.Settings)
	}
	if a.Health.Grace.D().Seconds() != 120 || a.Balancer.Sticky == nil || a.Balancer.Sticky.Cookie != "" ||
		!slices.Equal(a.Balancer.Sticky.SockJSPrefixes, []string{"/sockjs"}) || len(a.Balancer.Hosts) != 0 {
		t.Errorf("health %+v, balancer %+v", a.Health, a.Balancer)
	}
	setup := "shoal setup ssh://deploy@203.0.113.10 --server https://SERVER:7443 --advertise 203.0.113.10 --name web1 --token-file web1.token -i ~/.ssh/deploy_ed25519"
	if !strings.Contains(a.Text(), "#   "+setup+"\n") || !strings.Contains(report, setup) {
		t.Errorf("no setup line %q in shoal.yaml:\n%s", setup, a.Text())
	}
	if !strings.Contains(reportLine(report, "Mapped", "app.buildOptions.serverOnly"), "--server-only") {
		t.Errorf("serverOnly not reported as mapped:\n%s", report)
	}
	if !strings.Contains(report, "Not mapped (0)") || !strings.Contains(out, "wrote "+filepath.Join(dir, "shoal.yaml")) {
		t.Errorf("report:\n%s", out)
	}
	if strings.Contains(out, "settings-secret-123") {
		t.Error("the output shows a settings value")
	}
}

func TestImportMupFull(t *testing.T) {
	dir, mupJS := mupFolder(t, "full", true)
	a, out, report := importMup(t, dir, mupJS)
	if a.Name != "shop-front" || a.Run.RootURL != "https://shop.example.net" {
		t.Errorf("name %q root_url %q", a.Name, a.Run.RootURL)
	}
	if !strings.Contains(a.Build.Command, "meteor build .meteor/local/shoal-build --directory --server-only --allow-incompatible-updates &&") ||
		strings.Contains(a.Build.Command, "--debug") {
		t.Errorf("build %q", a.Build.Command)
	}
	wantEnv := map[string]string{"FEATURE_FLAGS": "cart,wishlist", "MONGO_OPLOG_URL": "mongodb://oplog.example.net/local",
		"HTTP_FORWARDED_COUNT": "2", "NODE_ENV": "production"}
	if len(a.Run.Env) != len(wantEnv) {
		t.Errorf("env %v, want %v", a.Run.Env, wantEnv)
	}
	for k, v := range wantEnv {
		if a.Run.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, a.Run.Env[k], v)
		}
	}
	// mup's built-in MongoDB: MONGO_URL comes from the deployer's
	// environment, never from mup.js's value.
	if !slices.Equal(a.Run.EnvFromHost, []string{"MONGO_URL"}) {
		t.Errorf("env_from_host %v", a.Run.EnvFromHost)
	}
	fi, err := os.Stat(filepath.Join(dir, mupSecretsFile))
	if err != nil || fi.Mode().Perm() != 0o600 || a.Run.SecretsFile != filepath.Join(dir, mupSecretsFile) {
		t.Fatalf("secrets file %v (%v), secrets_file %q", fi, err, a.Run.SecretsFile)
	}
	env, err := a.Env(func(k string) (string, bool) { return "mongodb://from-host/shop", k == "MONGO_URL" })
	if err != nil {
		t.Fatal(err)
	}
	wantSecret := map[string]string{"ADMIN_PASSWORD": "letmein-now", "GITHUB_TOKEN": "ghp_0123456789",
		"MAIL_URL": "smtp://postmaster:mailpw@smtp.example.net:587", "STRIPE_SECRET": "sk_test_abcdef",
		"MONGO_URL": "mongodb://from-host/shop"}
	for k, v := range wantSecret {
		got, ok := env.Get(k)
		if !ok || got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
		if i := slices.IndexFunc(env, func(e config.EnvVar) bool { return e.Name == k }); i < 0 || !env[i].Secret {
			t.Errorf("%s is not secret", k)
		}
	}
	if !slices.Equal(a.Balancer.Hosts, []string{"shop.example.net", "www.shop.example.net"}) ||
		a.Balancer.Sticky == nil || a.Balancer.Sticky.Cookie != "shoal_sticky" {
		t.Errorf("balancer %+v", a.Balancer)
	}
	if a.Health.Grace.D().Seconds() != 90 || a.Runtime != config.RuntimeProcess {
		t.Errorf("grace %v runtime %q", a.Health.Grace, a.Runtime)
	}
	for _, h := range []string{
		"shoal setup ssh://root@198.51.100.1:2222 --server https://SERVER:7443 --advertise 10.1.0.1 --name alpha --token-file alpha.token -i /keys/alpha.pem",
		"shoal setup ssh://ubuntu@198.51.100.2 --server https://SERVER:7443 --advertise 198.51.100.2 --name beta --token-file beta.token -i /keys/beta.pem",
		"shoal setup ssh://root@198.51.100.3 --server https://SERVER:7443 --advertise 198.51.100.3 --name gamma --token-file gamma.token\n",
	} {
		if !strings.Contains(a.Text(), h) {
			t.Errorf("shoal.yaml lacks %q", h)
		}
	}
	if strings.Contains(a.Text(), "198.51.100.9") {
		t.Error("a server that does not run the app got a setup line")
	}
	unmapped := map[string]string{
		"app.env.onStart":                       "is a function",
		"app.env.PORT":                          "Shoal sets PORT",
		"app.env.MONGO_URL":                     "built-in MongoDB",
		"app.volumes":                           "does not mount host folders",
		"app.log":                               "shoal logs",
		"app.deployCheckPort":                   "checks each instance directly",
		"app.enableUploadProgressBar":           "prints its own progress",
		"app.docker.image":                      "--docker",
		"app.docker.args":                       "--docker",
		"app.docker.buildInstructions":          "--docker",
		"app.docker.prepareBundle":              "--docker",
		"app.servers.gamma.env.PORT":            "same environment",
		"app.buildOptions.buildLocation":        ".meteor/local/shoal-build",
		"app.buildOptions.mobileSettings":       "Cordova",
		"app.buildOptions.server":               "Cordova",
		"servers.gamma.password":                "keys only",
		"servers.dbonly":                        "does not run the app",
		"proxy.ssl.letsEncryptEmail":            "acme",
		"proxy.ssl.forceSSL":                    "lb.yaml",
		"proxy.clientUploadLimit":               "max_body_bytes",
		"proxy.nginxServerConfig":               "not nginx",
		"proxy.nginxLocationConfig":             "not nginx",
		"proxy.shared":                          "server.yaml",
		"proxy.servers":                         "shoal server",
		"mongo":                                 "does not run databases",
		"hooks":                                 "deploy.hooks",
		"plugins":                               "no plugins",
		"privateDockerRegistry":                 "no registry",
		"app.docker.stopAppDuringPrepareBundle": "--docker",
	}
	for path, why := range unmapped {
		if l := reportLine(report, "Not mapped", path); !strings.Contains(l, why) {
			t.Errorf("report line of %s = %q, want the reason %q", path, l, why)
		}
	}
	for path, what := range map[string]string{
		"app.env.ADMIN_PASSWORD": "secrets.env", "app.env.MAIL_URL": "secrets.env", "app.env.FEATURE_FLAGS": "run.env",
		"app.deployCheckWaitTime": "health.grace: 90s", "proxy.domains": "balancer.hosts", "servers.alpha.pem": "-i",
		"proxy.stickySessions": "cookie", "app.buildOptions.allowIncompatibleUpdates": "true", "app.name": "shop-front",
	} {
		if l := reportLine(report, "Mapped", path); !strings.Contains(l, what) {
			t.Errorf("mapped line of %s = %q, want %q", path, l, what)
		}
	}
	for _, secret := range []string{"letmein-now", "ghp_0123456789", "mailpw", "s3cr3t-pw", "sk_test_abcdef", "hunter2-gamma", "regpw", "settings-secret-123"} {
		if strings.Contains(out, secret) || strings.Contains(a.Text(), secret) {
			t.Errorf("a secret value (%s) is in the output or shoal.yaml", secret)
		}
	}
}

func TestImportMupDocker(t *testing.T) {
	dir, mupJS := mupFolder(t, "docker", true)
	a, _, report := importMup(t, dir, "--docker", mupJS)
	if a.Runtime != config.RuntimeDocker || a.Run.Command != "" || a.Run.Port != 8080 || a.Run.CPU != 1.5 || a.Run.Memory != 512<<20 {
		t.Errorf("runtime %q command %q port %d cpu %v memory %d", a.Runtime, a.Run.Command, a.Run.Port, a.Run.CPU, a.Run.Memory)
	}
	out := filepath.Join(dir, ".meteor/local/shoal-build")
	if a.Build.Output != out || a.Build.Dockerfile != filepath.Join(out, "Dockerfile") ||
		!strings.HasSuffix(a.Build.Command, " && cp Dockerfile.shoal .meteor/local/shoal-build/Dockerfile") ||
		strings.Contains(a.Build.Command, "--omit=dev") {
		t.Errorf("build %+v", a.Build)
	}
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile.shoal"))
	if err != nil {
		t.Fatal(err)
	}
	var instr []string
	for _, l := range strings.Split(string(df), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			instr = append(instr, l)
		}
	}
	wantDF := []string{"FROM node:20-bookworm-slim", "RUN apt-get update && apt-get install -y fontconfig", "USER node",
		"COPY bundle /app", "WORKDIR /app/programs/server", "RUN npm install --omit=dev --no-audit --no-fund", "WORKDIR /app",
		"ENV NODE_ENV=production", `CMD ["node", "main.js"]`}
	if !slices.Equal(instr, wantDF) {
		t.Errorf("Dockerfile.shoal:\n%s", df)
	}
	if a.Run.Env["LOG_LEVEL"] != "debug" {
		t.Errorf("env %v", a.Run.Env)
	}
	env, err := a.Env(func(string) (string, bool) { return "mongodb://x/y", true })
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := env.Get("API_KEY"); v != "k-123" {
		t.Errorf("API_KEY %q", v)
	}
	for path, why := range map[string]string{"app.docker.args[6]": "--restart: Shoal supervises", "app.docker.args[7]": "--add-host: no equivalent"} {
		if l := reportLine(report, "Not mapped", path); !strings.Contains(l, why) {
			t.Errorf("report line of %s = %q, want %q", path, l, why)
		}
	}
	for path, what := range map[string]string{"app.docker.args[0]": "run.memory: 512MiB", "app.docker.args[1]": "run.cpu: 1.5",
		"app.docker.imagePort": "run.port: 8080", "app.docker.buildInstructions": "2 line(s)", "app.docker.image": "FROM node:20-bookworm-slim"} {
		if l := reportLine(report, "Mapped", path); !strings.Contains(l, what) {
			t.Errorf("mapped line of %s = %q, want %q", path, l, what)
		}
	}
}

func TestImportMupErrors(t *testing.T) {
	tests := []struct {
		name, fixture, js string
		args              []string
		want              []string // in stderr
	}{
		{name: "throws", fixture: "throws", want: []string{"mup.js: evaluating it with node failed", "Cannot read properties of undefined"}},
		{name: "settings missing", fixture: "nosettings", args: []string{"--settings", "/nonexistent/prod.json"},
			want: []string{"mup.js: the settings file (--settings)", "/nonexistent/prod.json"}},
		{name: "network", js: `require('https').get('https://example.com'); module.exports = {}`, want: []string{"mup.js may not use the network (https)"}},
		{name: "function", js: `module.exports = function () { return {} }`, want: []string{"must export an object", "function"}},
		{name: "no app", js: `module.exports = {servers: {}}`, want: []string{"mup.js: app: missing"}},
		{name: "no name", js: `module.exports = {app: {path: '..'}}`, want: []string{"mup.js: app.name: missing"}},
		{name: "not meteor", js: `module.exports = {app: {name: 'x', path: '../.deploy'}}`, want: []string{"mup.js: app.path: \"../.deploy\"", "no .meteor/release"}},
		{name: "unknown server", js: `module.exports = {servers: {}, app: {name: 'x', path: '..', servers: {one: {}}}}`, want: []string{"mup.js: app.servers.one: names no server"}},
		{name: "no host", js: `module.exports = {servers: {one: {username: 'root'}}, app: {name: 'x', path: '..', servers: {one: {}}}}`, want: []string{"mup.js: servers.one.host: missing"}},
		{name: "bad wait", js: `module.exports = {app: {name: 'x', path: '..', deployCheckWaitTime: 'soon'}}`, want: []string{"app.deployCheckWaitTime: soon is not a whole number"}},
		{name: "bad root url", js: `module.exports = {app: {name: 'x', path: '..', env: {ROOT_URL: 'shop.example.com'}}}`, want: []string{"mup.js: app.env.ROOT_URL: \"shop.example.com\" is not an http"}},
		{name: "bad domain", js: `module.exports = {app: {name: 'x', path: '..'}, proxy: {domains: 'a..b'}}`, want: []string{"made by shoal import mup does not load", "balancer.hosts"}},
		{name: "node type", js: `module.exports = {app: {name: 'x', path: '..', type: 'node'}}`, want: []string{"app.type: \"node\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fixture := tt.fixture
			if fixture == "" {
				fixture = "minimal"
			}
			dir, mupJS := mupFolder(t, fixture, false)
			if tt.js != "" {
				if err := os.WriteFile(mupJS, []byte(tt.js), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			code, _, errs := runCLI(t, append(append([]string{"import", "mup"}, tt.args...), mupJS)...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d: %s", code, ExitUsage, errs)
			}
			for _, w := range tt.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			for _, f := range []string{"shoal.yaml", mupSecretsFile, mupReportFile, meteorDockerfileName} {
				if exists(filepath.Join(dir, f)) {
					t.Errorf("%s was written", f)
				}
			}
		})
	}
}

func TestImportMupDefaultSettingsMissing(t *testing.T) {
	dir, mupJS := mupFolder(t, "nosettings", false)
	// The folder of mup.js, as `cd .deploy && shoal import mup` would.
	a, _, report := importMup(t, dir, filepath.Dir(mupJS))
	if a.Run.Settings != "" || a.Settings() != "" {
		t.Errorf("settings %q", a.Run.Settings)
	}
	if !strings.Contains(report, "no settings.json beside mup.js: METEOR_SETTINGS is not set") ||
		!strings.Contains(report, "run.root_url: mup.js sets no ROOT_URL") {
		t.Errorf("report:\n%s", report)
	}
}

func TestImportMupRefusesToOverwrite(t *testing.T) {
	dir, mupJS := mupFolder(t, "full", true)
	if err := os.WriteFile(filepath.Join(dir, mupSecretsFile), []byte("MINE=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "import", "mup", mupJS)
	if code != ExitUsage || !strings.Contains(errs, mupSecretsFile+" already exists (use -force to overwrite it)") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if exists(filepath.Join(dir, "shoal.yaml")) || exists(filepath.Join(dir, mupReportFile)) {
		t.Fatal("files were written though one existed")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, mupSecretsFile)); string(b) != "MINE=1\n" {
		t.Fatal("existing secrets file changed")
	}
	a, _, _ := importMup(t, dir, "--force", mupJS)
	if fi, err := os.Stat(a.Run.SecretsFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("replaced secrets file: %v %v", fi, err)
	}
	code, _, errs = runCLI(t, "import", "mup", mupJS)
	if code != ExitUsage || !strings.Contains(errs, "shoal.yaml already exists") {
		t.Fatalf("second import: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "import")
	if code != ExitUsage || !strings.Contains(errs, "shoal import mup") {
		t.Fatalf("import alone: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "import", "mup", filepath.Join(dir, "nope.js"))
	if code != ExitUsage || !strings.Contains(errs, "nope.js: no such file") {
		t.Fatalf("missing mup.js: exit %d: %s", code, errs)
	}
}

func TestInitMeteorDocker(t *testing.T) {
	dir := initFolder(t, "web", map[string]string{".meteor/release": "METEOR@3.1.2\n", "settings.json": "{}"})
	code, out, errs := runCLI(t, "init", "--docker", dir)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	a, err := config.Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Runtime != config.RuntimeDocker || a.Run.Port != 3000 || a.Build.Dockerfile != filepath.Join(dir, ".meteor/local/shoal-build/Dockerfile") ||
		a.Run.Env["HTTP_FORWARDED_COUNT"] != "1" || a.Settings() != "{}" {
		t.Errorf("app %+v", a)
	}
	df, err := os.ReadFile(filepath.Join(dir, meteorDockerfileName))
	if err != nil || !strings.Contains(string(df), "\nFROM node:22-bookworm-slim\n") || !strings.Contains(out, "wrote "+filepath.Join(dir, meteorDockerfileName)) {
		t.Errorf("Dockerfile.shoal (%v):\n%s\nstdout:\n%s", err, df, out)
	}
	if code, _, errs := runCLI(t, "init", "--docker", "--force", dir); code != ExitOK {
		t.Fatalf("--force: exit %d: %s", code, errs)
	}
	if err := os.Remove(filepath.Join(dir, "shoal.yaml")); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "init", "--docker", dir); code != ExitUsage || !strings.Contains(errs, "Dockerfile.shoal already exists") {
		t.Fatalf("existing Dockerfile.shoal: exit %d: %s", code, errs)
	}
	goDir := initFolder(t, "goapp", map[string]string{"go.mod": "module x\n"})
	if code, _, errs := runCLI(t, "init", "--docker", goDir); code != ExitUsage || !strings.Contains(errs, "Meteor apps only") {
		t.Fatalf("go app: exit %d: %s", code, errs)
	}
}

func TestMeteorNodeImage(t *testing.T) {
	for rel, want := range map[string]string{"METEOR@3.0.4": "node:20-bookworm-slim", "METEOR@3.1": "node:22-bookworm-slim",
		"METEOR@3.3.1-rc.0": "node:22-bookworm-slim", "METEOR@2.16": "node:14-bullseye-slim"} {
		dir := initFolder(t, "m", map[string]string{".meteor/release": rel + "\n"})
		if got, sure := meteorNodeImage(dir); got != want || !sure {
			t.Errorf("%s: %s %v, want %s", rel, got, sure, want)
		}
	}
	dir := initFolder(t, "m", map[string]string{".meteor/release": "none\n"})
	if _, sure := meteorNodeImage(dir); sure {
		t.Error("an unreadable release is a sure guess")
	}
}

func TestMupLooksSecret(t *testing.T) {
	for _, c := range []struct {
		name, value string
		want        bool
	}{
		{"MONGO_URL", "mongodb://u:p@h/db", true}, {"MONGO_URL", "mongodb://h/db", false}, {"MAIL_URL", "smtp://h", true},
		{"JWT_SECRET", "x", true}, {"SLACK_TOKEN", "x", true}, {"DB_PASSWORD", "x", true}, {"STRIPE_API_KEY", "x", true},
		{"FEATURES", "a,b", false}, {"KADIRA_APP_ID", "x", false},
	} {
		if got := mupLooksSecret(c.name, c.value); got != c.want {
			t.Errorf("%s=%s: %v, want %v", c.name, c.value, got, c.want)
		}
	}
}

func TestEvalMupJSBounded(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	dir := initFolder(t, "m", map[string]string{
		"loop.js":  "for (;;) {}\n",
		"timer.js": "setInterval(() => {}, 1000); module.exports = {app: {name: 'x'}};\n",
		"write.js": "require('fs').writeFileSync(__dirname + '/written', 'x'); module.exports = {};\n",
		"spawn.js": "require('child_process').execSync('true'); module.exports = {};\n",
		"json.js":  "module.exports = {n: 1.5, s: 'x', d: new Date(0), r: /x/, nested: {u: undefined}};\n",
	})
	start := time.Now()
	_, _, err = evalMupJS(context.Background(), node, filepath.Join(dir, "loop.js"), time.Second)
	if err == nil || !strings.Contains(err.Error(), "loop.js: node did not finish evaluating it within 1s") {
		t.Errorf("endless loop: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the endless loop was stopped after %v", d)
	}
	// A timer left running does not keep node from answering.
	cfg, _, err := evalMupJS(context.Background(), node, filepath.Join(dir, "timer.js"), 10*time.Second)
	if err != nil || cfg["app"] == nil {
		t.Errorf("timer: %v %v", cfg, err)
	}
	cfg, dropped, err := evalMupJS(context.Background(), node, filepath.Join(dir, "json.js"), 10*time.Second)
	if err != nil || cfg["s"] != "x" || cfg["d"] != "1970-01-01T00:00:00.000Z" || cfg["n"] != json.Number("1.5") {
		t.Errorf("json: %v %v", cfg, err)
	}
	if len(dropped) != 2 || dropped[0] != (mupDropped{Path: "r", Kind: "a regular expression"}) || dropped[1] != (mupDropped{Path: "nested.u", Kind: "undefined"}) {
		t.Errorf("dropped %+v", dropped)
	}
	if nodePermissionFlag(context.Background(), node) == "" {
		t.Log("node has no permission model: writes and processes are not refused")
		return
	}
	for _, f := range []string{"write.js", "spawn.js"} {
		if _, _, err := evalMupJS(context.Background(), node, filepath.Join(dir, f), 10*time.Second); err == nil {
			t.Errorf("%s was allowed", f)
		}
	}
	if exists(filepath.Join(dir, "written")) {
		t.Error("mup.js wrote a file")
	}
}
