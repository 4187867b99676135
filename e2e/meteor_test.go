package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// meteorFixture copies e2e/testdata/meteor/app (a Meteor app folder with
// a mup.js in .deploy) into a temp dir and returns it, with the
// environment for shoal: the stand-in meteor command first on the PATH.
// It skips the test without node and npm.
func meteorFixture(t *testing.T) (string, []string) {
	t.Helper()
	for _, c := range []string{"node", "npm"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed", c)
		}
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	fixture := filepath.Join(root, "e2e", "testdata", "meteor")
	dir := filepath.Join(t.TempDir(), "shop")
	if err := testenv.CopyApp(filepath.Join(fixture, "app"), dir); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "MONGO_URL=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+filepath.Join(fixture, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir, env
}

// testPorts rewrites the shoal.yaml in dir for a test: ephemeral ports,
// short health checks and stop timeout.
func testPorts(t *testing.T, dir string) {
	t.Helper()
	file := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	section := func(k string) map[string]any {
		m, _ := doc[k].(map[string]any)
		if m == nil {
			m = map[string]any{}
			doc[k] = m
		}
		return m
	}
	section("balancer")["listen"] = "127.0.0.1:0"
	section("balancer")["drain_timeout"] = "2s"
	section("admin")["listen"] = "127.0.0.1:0"
	h := section("health")
	h["interval"], h["timeout"], h["grace"] = "1s", "1s", "20s"
	section("run")["stop_timeout"] = "3s"
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// meteorEnv is what the fixture's /debug/env answers.
type meteorEnv struct {
	Settings struct {
		Public  map[string]string `json:"public"`
		Private map[string]string `json:"private"`
	} `json:"settings"`
	RootURL        string `json:"root_url"`
	ForwardedCount string `json:"http_forwarded_count"`
	MongoURL       string `json:"mongo_url"`
	NodeEnv        string `json:"node_env"`
	Feature        string `json:"feature"`
	ClientAddress  string `json:"client_address"`
}

// debugEnv asks the app through the balancer what it runs with, sending
// a forged X-Forwarded-For that the balancer must replace.
func debugEnv(t *testing.T, lbURL string) meteorEnv {
	t.Helper()
	req, err := http.NewRequestWithContext(testenv.Context(t, 10*time.Second), http.MethodGet, lbURL+"/debug/env", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "203.0.113.66")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e meteorEnv
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /debug/env: %s, %v", resp.Status, err)
	}
	return e
}

// checkServes checks the page and a client file of the bundle through
// the balancer.
func checkServes(t *testing.T, lbURL, rootURL string) {
	t.Helper()
	ctx := testenv.Context(t, 10*time.Second)
	code, body, err := httpGet(ctx, lbURL+"/")
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"ROOT_URL":`+strconvQuote(rootURL)) {
		t.Errorf("GET /: %d %q %v", code, body, err)
	}
	code, body, err = httpGet(ctx, lbURL+"/app.js")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "shop client") {
		t.Errorf("GET /app.js (the client, from programs/web.browser): %d %q %v", code, body, err)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestMeteorInitServes: in a Meteor app folder, shoal init writes a
// build of meteor build --directory and a run of node main.js; shoal up
// builds it with the meteor on the PATH (a stand-in writing a bundle
// with a real bundle's layout), starts the bundle, and serves it through
// the balancer with METEOR_SETTINGS, MONGO_URL (from shoal's
// environment) and HTTP_FORWARDED_COUNT=1 reaching the process.
func TestMeteorInitServes(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir, env := meteorFixture(t)
	if code, out := runShoal(t, bin, dir, "init"); code != 0 || !strings.Contains(out, "found .meteor/release") {
		t.Fatalf("shoal init: exit %d\n%s", code, out)
	}
	testPorts(t, dir)
	u, err := testenv.StartUpEnv(testenv.Context(t, 120*time.Second), bin, dir, append(env, "MONGO_URL=mongodb://127.0.0.1:27017/shop-init"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		u.Close()
		if t.Failed() {
			t.Logf("output of shoal up:\n%s", u.Output())
		}
	})
	for _, f := range []string{"main.js", "star.json", "programs/server/boot.js", "programs/server/package-lock.json", "programs/web.browser/program.json"} {
		if _, err := os.Stat(filepath.Join(dir, ".meteor/local/shoal-build/bundle", f)); err != nil {
			t.Errorf("the build did not make the bundle's %s: %v", f, err)
		}
	}
	e := debugEnv(t, u.LBURL)
	if e.Settings.Public["from"] != "init" || e.Settings.Private["key"] != "init-settings" {
		t.Errorf("METEOR_SETTINGS = %+v, want settings.json", e.Settings)
	}
	if e.ForwardedCount != "1" || e.ClientAddress != "127.0.0.1" {
		t.Errorf("HTTP_FORWARDED_COUNT %q, client address %q: want 1 and the balancer's view of the client, not the forged header", e.ForwardedCount, e.ClientAddress)
	}
	if e.MongoURL != "mongodb://127.0.0.1:27017/shop-init" || e.NodeEnv != "production" {
		t.Errorf("MONGO_URL %q NODE_ENV %q", e.MongoURL, e.NodeEnv)
	}
	checkServes(t, u.LBURL, e.RootURL)
	if code, err := u.Stop(testenv.Context(t, 60*time.Second), syscall.SIGTERM); code != 0 || err != nil {
		t.Fatalf("shoal up after SIGTERM: exit %d, %v", code, err)
	}
}

// TestMupImportServes: shoal import mup on the fixture's .deploy/mup.js
// writes shoal.yaml, secrets.env and the report; shoal up on the result
// builds and serves the app with what mup.js set: ROOT_URL, the settings
// file beside mup.js, MONGO_URL from the secrets file, a literal env.
func TestMupImportServes(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir, env := meteorFixture(t)
	code, out := runShoal(t, bin, filepath.Join(dir, ".deploy"), "import", "mup")
	if code != 0 || !strings.Contains(out, "Not mapped (1)") || !strings.Contains(out, "app.docker.image: the app runs as processes") {
		t.Fatalf("shoal import mup: exit %d\n%s", code, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "secrets.env")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.env: %v %v", fi, err)
	}
	testPorts(t, dir)
	u, err := testenv.StartUpEnv(testenv.Context(t, 120*time.Second), bin, dir, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		u.Close()
		if t.Failed() {
			t.Logf("output of shoal up:\n%s", u.Output())
		}
	})
	if u.App != "shop" {
		t.Errorf("app %q", u.App)
	}
	e := debugEnv(t, u.LBURL)
	if e.Settings.Public["from"] != "mup" || e.Settings.Private["key"] != "mup-settings" {
		t.Errorf("METEOR_SETTINGS = %+v, want .deploy/settings.json", e.Settings)
	}
	if e.RootURL != "https://shop.example.test" || e.MongoURL != "mongodb://shop:mongo-pw@127.0.0.1:27017/shop" ||
		e.Feature != "on" || e.ForwardedCount != "1" || e.ClientAddress != "127.0.0.1" {
		t.Errorf("env %+v", e)
	}
	checkServes(t, u.LBURL, "https://shop.example.test")
	if strings.Contains(u.Output(), "mongo-pw") {
		t.Error("shoal up printed the MongoDB password")
	}
	if code, err := u.Stop(testenv.Context(t, 60*time.Second), syscall.SIGTERM); code != 0 || err != nil {
		t.Fatalf("shoal up after SIGTERM: exit %d, %v", code, err)
	}
}
