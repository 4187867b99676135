package cli

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/adminapi"
)

// walk calls fn with the path of every command of the tree, the root's
// included ("" for the root), so that a new verb is covered at once.
func walk(c *cobra.Command, path []string, fn func(path []string, c *cobra.Command)) {
	fn(path, c)
	for _, sub := range c.Commands() {
		walk(sub, append(append([]string(nil), path...), sub.Name()), fn)
	}
}

// tree is the command tree as Run builds it, with cobra's help and
// completion commands.
func tree(t *testing.T) *cobra.Command {
	t.Helper()
	root := newRoot(&Env{Stdout: io.Discard, Stderr: io.Discard})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}

func TestEveryVerbHelpExitsZero(t *testing.T) {
	n := 0
	walk(tree(t), nil, func(path []string, c *cobra.Command) {
		if c.Hidden {
			return
		}
		n++
		for _, args := range [][]string{
			append(append([]string(nil), path...), "--help"),
			append(append([]string(nil), path...), "-h"),
			append([]string{"help"}, path...),
		} {
			code, out, errs := runCLI(t, args...)
			if code != ExitOK {
				t.Errorf("shoal %s: exit %d, want 0; stderr:\n%s", strings.Join(args, " "), code, errs)
				continue
			}
			if want := cmp.Or(c.Long, c.Short); !strings.Contains(out, "Usage:") || !strings.Contains(out, want) {
				t.Errorf("shoal %s: no usage with %q in:\n%s", strings.Join(args, " "), want, out)
			}
		}
	})
	// The 11 verbs that exited 2 on --help, and the others.
	for _, v := range []string{"up", "deploy", "rollback", "status", "scale", "events", "releases", "logs", "env",
		"maintenance", "autoscale", "lb", "agent", "init", "version", "backup", "restore", "completion"} {
		if c, _, err := tree(t).Find([]string{v}); err != nil || c.Name() != v {
			t.Errorf("no verb %s in the tree", v)
		}
	}
	if n < 30 {
		t.Errorf("walked %d commands, want every verb and sub-verb", n)
	}
}

// The daemons parse their own flags: their help lists those too.
func TestDaemonHelpListsTheirFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"up", "--help"}, []string{"Usage:", "-c file"}},
		{[]string{"help", "up"}, []string{"Flags of shoal up", "-c file"}},
		{[]string{"up", "-c", "x.yaml", "-h"}, []string{"Usage:", "-c file"}},
		{[]string{"lb", "--help"}, []string{"Available Commands", "drain", "-log-format"}},
		{[]string{"help", "lb"}, []string{"Flags of shoal lb", "-log-level"}},
		{[]string{"agent", "--help"}, []string{"Usage:", "-c file", "-log-format"}},
		{[]string{"help", "agent"}, []string{"Flags of shoal agent", "/etc/shoal/agent.yaml"}},
	} {
		code, out, errs := runCLI(t, tt.args...)
		for _, w := range tt.want {
			// With -h the daemon's flag set writes its usage to stderr.
			if code != ExitOK || !strings.Contains(out+errs, w) {
				t.Errorf("shoal %s: exit %d, want 0 and %q in:\n%s%s", strings.Join(tt.args, " "), code, w, out, errs)
			}
		}
	}
	// A sub-command's help is its own, without the daemon's flags.
	if _, out, _ := runCLI(t, "lb", "drain", "--help"); strings.Contains(out, "Flags of") || !strings.Contains(out, "--timeout") {
		t.Errorf("shoal lb drain --help:\n%s", out)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{}, "Usage:"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"stauts"}, "did you mean status?"},
		{[]string{"status", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"status", "-bogus"}, "unknown shorthand flag"},
		{[]string{"status", "extra"}, `unexpected argument "extra"`},
		{[]string{"status", "-o", "yaml"}, `-o "yaml": want text or json`},
		{[]string{"lb", "status", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"lb", "drain", "app"}, "want 2 argument(s), got 1"},
		{[]string{"env"}, "usage: shoal env list"},
		{[]string{"env", "bogus"}, `unknown env command "bogus"`},
		{[]string{"env", "set", "NOEQUALS"}, `"NOEQUALS" is not KEY=VALUE`},
		{[]string{"scale"}, "want 1 argument(s), got 0"},
		{[]string{"scale", "many"}, `"many" is not a count`},
		{[]string{"rollback", "vx"}, `"vx" is not a release`},
		{[]string{"maintenance", "maybe"}, "usage: shoal maintenance on|off"},
		{[]string{"events", "-n", "0"}, "-n 0: want 1 or more"},
		{[]string{"autoscale", "sideways"}, `unexpected "sideways"`},
		{[]string{"restore"}, "restore needs one backup file"},
		{[]string{"restore", "--id", "s1", "b.db"}, "--id and --advertise are for shoal restore --cluster"},
		{[]string{"restore", "--cluster", "-c", "missing-server.yaml", "b.db"}, "missing-server.yaml"},
		{[]string{"init", "a", "b"}, "init takes one folder"},
		{[]string{"version", "x"}, `unexpected argument "x"`},
		{[]string{"help", "bogus"}, `unknown help topic "bogus"`},
		{[]string{"help", "lb", "bogus"}, `unknown help topic "lb bogus"`},
	} {
		code, out, errs := runCLI(t, tt.args...)
		if code != ExitUsage || !strings.Contains(errs, tt.want) {
			t.Errorf("shoal %s: exit %d, want 2 and %q on stderr:\n%s%s", strings.Join(tt.args, " "), code, tt.want, errs, out)
		}
	}
}

// fakeAdmin is an admin API with canned answers, behind the real token
// check; it records the requests it gets.
type fakeAdmin struct {
	*httptest.Server
	token string
	mu    sync.Mutex
	got   []string // "METHOD /path?query body"
}

func newFakeAdmin(t *testing.T, token string) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{token: token}
	answers := map[string]string{
		"GET /v1/status":     `{"app":"web","release":2,"desired":1,"instances":[{"id":"web-2-a","release":2,"state":"in_service"}]}`,
		"GET /v1/autoscale":  `{"enabled":true,"state":"watching","desired":1,"min":1,"max":3}`,
		"POST /v1/autoscale": `{"enabled":true,"state":"paused","desired":1,"min":1,"max":3}`,
		"GET /v1/events":     `[{"seq":1,"type":"deploy","release":1,"reason":"first"},{"seq":2,"type":"deploy","release":2,"reason":"second"}]`,
		"GET /v1/releases":   `[{"version":1},{"version":2,"current":true}]`,
		"GET /v1/env":        `[{"name":"A","value":"b"}]`,
		"GET /v1/lb/status":  `{"pools":[{"name":"app","targets":[{"addr":"127.0.0.1:1","state":"healthy","weight":1}]}]}`,
		"POST /v1/scale":     `{"app":"web","desired":3,"min":1,"max":5}`,
		"POST /v1/lb/pools/app/targets/127.0.0.1:1/drain": `{"pool":"app","addr":"127.0.0.1:1","idle":true}`,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(body)))
		f.mu.Unlock()
		a, ok := answers[r.Method+" "+r.URL.Path]
		if !ok {
			http.Error(w, `{"error":"no such route in the fake"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, a)
	})
	f.Server = httptest.NewServer(adminapi.RequireToken(token, mux))
	t.Cleanup(f.Close)
	return f
}

// requests returns the requests received so far and forgets them.
func (f *fakeAdmin) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	got := f.got
	f.got = nil
	return got
}

// tokenFile writes tok to a file and returns its path.
func tokenFile(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsBeforeOrAfterArguments(t *testing.T) {
	f := newFakeAdmin(t, "tok-1")
	tf := tokenFile(t, "tok-1")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"scale", "3", "--admin", f.URL, "--token-file", tf}, `POST /v1/scale {"desired":3}`},
		{[]string{"scale", "--admin", f.URL, "3", "--token-file", tf}, `POST /v1/scale {"desired":3}`},
		{[]string{"--admin=" + f.URL, "scale", "--token-file=" + tf, "3"}, `POST /v1/scale {"desired":3}`},
		{[]string{"scale", "3", "--bogus", "--admin", f.URL, "--token-file", tf}, ""}, // a usage error sends nothing
		{[]string{"lb", "drain", "app", "127.0.0.1:1", "--wait", "--admin", f.URL, "--token-file", tf}, "POST /v1/lb/pools/app/targets/127.0.0.1:1/drain?wait=true {}"},
		{[]string{"lb", "drain", "--wait", "app", "--admin", f.URL, "127.0.0.1:1", "--token-file", tf}, "POST /v1/lb/pools/app/targets/127.0.0.1:1/drain?wait=true {}"},
		// One dash before a long flag, as the flag package took it.
		{[]string{"lb", "drain", "-wait", "app", "127.0.0.1:1", "-admin", f.URL, "-token-file=" + tf}, "POST /v1/lb/pools/app/targets/127.0.0.1:1/drain?wait=true {}"},
		{[]string{"lb", "drain", "app", "127.0.0.1:1", "-timeout", "5s", "-admin", f.URL, "-token-file", tf}, `POST /v1/lb/pools/app/targets/127.0.0.1:1/drain {"timeout":"5s"}`},
	} {
		code, out, errs := runCLI(t, tt.args...)
		got := f.requests()
		if tt.want == "" {
			if code != ExitUsage || len(got) != 0 {
				t.Errorf("shoal %s: exit %d, requests %q; want exit 2 and none", strings.Join(tt.args, " "), code, got)
			}
			continue
		}
		if code != ExitOK || len(got) != 1 || got[0] != tt.want {
			t.Errorf("shoal %s: exit %d, requests %q, want %q\n%s%s", strings.Join(tt.args, " "), code, got, tt.want, out, errs)
		}
	}
}

func TestEnvironmentPointsAtTheAdminAPI(t *testing.T) {
	f := newFakeAdmin(t, "ci-token")
	other := newFakeAdmin(t, "other-token")
	t.Chdir(t.TempDir()) // no shoal.yaml, no lb.yaml, no token file here
	t.Setenv(envAdminURL, f.URL)
	t.Setenv(envToken, " ci-token\n")

	for _, args := range [][]string{{"status"}, {"lb", "status"}, {"releases", "-o", "json"}} {
		if code, out, errs := runCLI(t, args...); code != ExitOK {
			t.Errorf("shoal %s with %s and %s: exit %d\n%s%s", strings.Join(args, " "), envAdminURL, envToken, code, out, errs)
		}
	}
	if got := f.requests(); len(got) != 4 { // status asks for autoscale too
		t.Errorf("requests %q", got)
	}
	// Flags win over the environment.
	code, _, errs := runCLI(t, "status", "--admin", other.URL, "--token-file", tokenFile(t, "other-token"))
	if code != ExitOK || len(other.requests()) == 0 || len(f.requests()) != 0 {
		t.Errorf("--admin and --token-file did not win: exit %d\n%s", code, errs)
	}
	// A wrong token is the server's 401, not a silent fallback.
	t.Setenv(envToken, "wrong")
	if code, _, errs := runCLI(t, "status"); code != ExitFailure || !strings.Contains(errs, "401") && !strings.Contains(errs, "token") {
		t.Errorf("wrong token: exit %d\n%s", code, errs)
	}
	// Without the environment, the verbs look for shoal.yaml and say so.
	t.Setenv(envAdminURL, "")
	t.Setenv(envToken, "")
	if code, _, errs := runCLI(t, "status"); code != ExitUsage || !strings.Contains(errs, envAdminURL) {
		t.Errorf("no configuration: exit %d\n%s", code, errs)
	}
}

func TestReadVerbsPrintJSON(t *testing.T) {
	f := newFakeAdmin(t, "tok-2")
	tf := tokenFile(t, "tok-2")
	for _, verb := range [][]string{{"status"}, {"events"}, {"releases"}, {"env", "list"}, {"autoscale"},
		{"autoscale", "status"}, {"lb", "status"}} {
		for _, flag := range [][]string{{"-o", "json"}, {"--output=json"}, {"--json"}, {"-json"}} {
			args := append(append(append([]string(nil), verb...), flag...), "--admin", f.URL, "--token-file", tf)
			code, out, errs := runCLI(t, args...)
			if code != ExitOK {
				t.Errorf("shoal %s: exit %d\n%s", strings.Join(args, " "), code, errs)
				continue
			}
			// events prints one JSON value per event; the others one value.
			dec := json.NewDecoder(strings.NewReader(out))
			values := 0
			for {
				var v any
				err := dec.Decode(&v)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("shoal %s: not JSON (%v):\n%s", strings.Join(args, " "), err, out)
					break
				}
				if _, ok := v.(map[string]any); !ok {
					if _, ok := v.([]any); !ok {
						t.Errorf("shoal %s: %T, want an object or an array:\n%s", strings.Join(args, " "), v, out)
					}
				}
				values++
			}
			if want := map[bool]int{true: 2, false: 1}[verb[0] == "events"]; values != want {
				t.Errorf("shoal %s: %d JSON values, want %d:\n%s", strings.Join(args, " "), values, want, out)
			}
		}
		f.requests()
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "# bash completion V2 for shoal",
		"zsh":  "#compdef shoal",
		"fish": "complete -c shoal",
	} {
		code, out, errs := runCLI(t, "completion", shell)
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, no %q in %.300s\n%s", shell, code, want, out, errs)
		}
	}
	// The scripts ask the binary; it answers with the verbs and flags.
	code, out, _ := runCLI(t, "__complete", "sta")
	if code != ExitOK || !strings.Contains(out, "status") {
		t.Errorf("__complete sta: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "__complete", "maintenance", "")
	if code != ExitOK || !strings.Contains(out, "on") || !strings.Contains(out, "off") {
		t.Errorf("__complete maintenance: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "__complete", "help", "lb", "")
	if code != ExitOK || !strings.Contains(out, "drain") {
		t.Errorf("__complete help lb: exit %d\n%s", code, out)
	}
	// Instances and releases come from the admin API.
	f := newFakeAdmin(t, "tok-3")
	tf := tokenFile(t, "tok-3")
	code, out, _ = runCLI(t, "__complete", "logs", "--admin", f.URL, "--token-file", tf, "")
	if code != ExitOK || !strings.Contains(out, "web-2-a\tv2 in_service") {
		t.Errorf("__complete logs: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "__complete", "rollback", "--admin", f.URL, "--token-file", tf, "")
	if code != ExitOK || !strings.Contains(out, "v1") || strings.Contains(out, "v2") {
		t.Errorf("__complete rollback: exit %d, want v1 and not the current v2\n%s", code, out)
	}
}

func TestVersion(t *testing.T) {
	want := "shoal " + buildInfo().String() + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if code, out, _ := runCLI(t, args...); code != ExitOK || out != want {
			t.Errorf("shoal %s: exit %d, %q, want %q", strings.Join(args, " "), code, out, want)
		}
	}
	if !strings.Contains(want, "go1.") {
		t.Errorf("no Go version in %q", want)
	}
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.9.9-test"
	if _, out, _ := runCLI(t, "version"); !strings.HasPrefix(out, "shoal v9.9.9-test") {
		t.Errorf("-ldflags override: %q", out)
	}
}

func TestHelpDocumentsExitCodesAndEnvironment(t *testing.T) {
	_, out, _ := runCLI(t, "--help")
	for _, w := range []string{"Exit status: 0 success, 1 failure", "2 usage or configuration error", envAdminURL, envToken, "completion"} {
		if !strings.Contains(out, w) {
			t.Errorf("shoal --help lacks %q:\n%s", w, out)
		}
	}
}

// runLB hands a client verb given first to the command tree.
func TestRunLBDispatchesClientVerbs(t *testing.T) {
	f := newFakeAdmin(t, "tok-4")
	tf := tokenFile(t, "tok-4")
	var out strings.Builder
	err := runLB(t.Context(), &Env{Stdout: &out, Stderr: io.Discard}, []string{"status", "-o", "json", "--admin", f.URL, "--token-file", tf})
	var st map[string]any
	if err != nil || json.Unmarshal([]byte(out.String()), &st) != nil || st["pools"] == nil {
		t.Fatalf("runLB status: %v\n%s", err, out.String())
	}
	if got := f.requests(); len(got) != 1 || got[0] != "GET /v1/lb/status" {
		t.Errorf("requests %q", got)
	}
}
