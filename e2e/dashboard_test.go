package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// dashboardLine is what `shoal up` prints after its ready line.
var dashboardLine = regexp.MustCompile(`shoal up: dashboard (http://\S+/ui/)`)

const chromium = "/usr/bin/chromium"

// TestDashboardInBrowser runs the real `shoal up` on the meteor-like
// example with traffic flowing, and drives its dashboard in Debian's
// chromium (e2e/browser/run.mjs): log in with the admin token, see the
// instances, kill one (SIGKILL to its pid from `shoal status -json`) and
// watch it be replaced, run a deploy and watch its progress, roll back.
// SHOAL_SCREENSHOTS=1 refreshes docs/screenshots from the real app.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no %s (apt-get install -y chromium): %v", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH (apt-get install -y nodejs npm)")
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	browserDir := filepath.Join(root, "e2e", "browser")
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Skip("playwright-core is not installed: run `npm ci --no-audit --no-fund` in e2e/browser")
	}
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 2, 4)
	editConfig(t, dir, func(doc map[string]any) {
		run := doc["run"].(map[string]any)
		env := run["env"].(map[string]any)
		// Long polls that wait 1.5 s at the target: slow requests whose
		// time is the target's time to first byte.
		env["POLL_TIMEOUT_MS"] = "1500"
		// A boot slow enough that a deploy's progress is seen batch by
		// batch.
		env["BOOT_DELAY_MS"] = "1500"
		// Chromium shares the machine: 200 ms health timeouts flap.
		h := doc["health"].(map[string]any)
		h["interval"], h["timeout"] = "500ms", "500ms"
		// Auto scaling shown on the overview; a target this test's
		// traffic never reaches and a long stabilization keep it from
		// changing the count the test sets.
		doc["autoscale"] = map[string]any{"interval": "1s", "window": "5s", "warmup": "1s", "stabilization": "30m",
			"policies": []any{map[string]any{"name": "rps", "metric": "rps_per_instance", "target": 50}}}
	})
	up := startUp(t, bin, dir)
	m, err := up.p.WaitForLine(testenv.Context(t, 10*time.Second), dashboardLine)
	if err != nil {
		t.Fatalf("no dashboard line: %v\n%s", err, up.p.Output())
	}
	if want := up.adminURL + "/ui/"; m[1] != want {
		t.Errorf("dashboard line says %s, want %s", m[1], want)
	}
	token, err := os.ReadFile(filepath.Join(dir, ".shoal", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}

	// The dashboard is outside the API's bearer token, the API is not.
	for path, want := range map[string]int{"/ui/login": 200, "/v1/status": 401} {
		resp, err := http.Get(up.adminURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a token: %s, want %d", path, resp.Status, want)
		}
	}

	stop := make(chan struct{})
	traffic := startTraffic(up.lbURL, stop)
	defer func() {
		close(stop)
		traffic.Wait()
	}()

	// The balancer's requests reach the dashboard's charts: the last
	// minute at once, and for screenshots the last hour too (its steps
	// are 20 s, and a chart shows finished steps only).
	ui := loginDashboard(t, up.adminURL, strings.TrimSpace(string(token)))
	charts := []string{"rps.svg?app=meteor-like&window=1m", "latency.svg?app=meteor-like&window=1m"}
	if os.Getenv("SHOAL_SCREENSHOTS") == "1" {
		charts = append(charts, "rps.svg?app=meteor-like", "latency.svg?app=meteor-like")
	}
	for _, c := range charts {
		err := testenv.WaitFor(testenv.Context(t, 90*time.Second), func() error {
			resp, err := ui.Get(up.adminURL + "/ui/chart/" + c)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "<svg") {
				return fmt.Errorf("chart %s: %s", c, resp.Status)
			}
			if strings.Contains(string(b), "No requests in this window") {
				return fmt.Errorf("chart %s shows no requests", c)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	ctx := testenv.Context(t, 5*time.Minute)
	cmd := exec.CommandContext(ctx, node, "run.mjs", up.adminURL)
	cmd.Dir = browserDir
	statusJS := `let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{` +
		`const i=JSON.parse(s).instances.find(x=>x.id===process.env.INSTANCE);` +
		`if(!i||!i.pid){console.error("no pid for "+process.env.INSTANCE);process.exit(1)}` +
		`process.kill(i.pid,"SIGKILL");console.log("killed "+i.pid)})`
	cmd.Env = append(os.Environ(),
		"SHOAL_TOKEN="+strings.TrimSpace(string(token)),
		"SHOAL_APP=meteor-like",
		"KILL_CMD=cd "+shellQuote(dir)+" && "+shellQuote(bin)+" status -json | "+shellQuote(node)+" -e "+shellQuote(statusJS),
		"STEP_TIMEOUT_MS=60000",
		"LOG_MIN_LINES=2", // the app logs "booting" and "listening"
	)
	if hasDeploy(t, bin, dir) {
		// A code change, then `shoal deploy` in the background (it waits
		// for the rollout, which the browser is to watch).
		deployLog := filepath.Join(t.TempDir(), "deploy.log")
		t.Cleanup(func() {
			if b, err := os.ReadFile(deployLog); err == nil {
				t.Logf("shoal deploy output:\n%s", b)
			}
		})
		cmd.Env = append(cmd.Env, "DEPLOY_CMD=cd "+shellQuote(dir)+" && echo \"// change $(date +%s%N)\" >> main.js && ("+
			shellQuote(bin)+" deploy > "+shellQuote(deployLog)+" 2>&1 &)")
	} else {
		t.Log("this shoal has no deploy command: the browser test skips the deploy and the rollback")
		cmd.Env = append(cmd.Env, "SKIP_DEPLOY=1")
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("run.mjs output:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v\nshoal up output:\n%s", err, up.p.Output())
	}

	// ctrl-C still stops cleanly with the dashboard's streams open a
	// moment ago.
	up.p.Signal(syscall.SIGINT)
	if code, err := up.p.Wait(testenv.Context(t, 60*time.Second)); err != nil || code != 0 {
		t.Errorf("shoal up after SIGINT: exit %d, %v\n%s", code, err, up.p.Output())
	}
}

// hasDeploy reports whether the shoal binary has a deploy command.
func hasDeploy(t *testing.T, bin, dir string) bool {
	t.Helper()
	_, out := runShoal(t, bin, dir, "help")
	return regexp.MustCompile(`(?m)^\s+deploy\s`).MatchString(out)
}

// editConfig rewrites the app's shoal.yaml through edit.
func editConfig(t *testing.T, dir string, edit func(doc map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	if b, err = yaml.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// startTraffic sends a steady trickle through the balancer until stop is
// closed: page loads, small POSTs and long polls. Failures are expected
// while instances are killed and replaced; this traffic feeds the charts,
// it asserts nothing. Each worker is bounded in count.
func startTraffic(lbURL string, stop <-chan struct{}) *sync.WaitGroup {
	// Page loads come from new visitors (no cookie) and spread over the
	// instances; a poll session lives in one instance's memory, so its
	// client keeps the sticky cookie.
	pages := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	jar, _ := cookiejar.New(nil)
	polls := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}, Jar: jar}
	var wg sync.WaitGroup
	do := func(hc *http.Client, method, path string, body string) string {
		req, err := http.NewRequest(method, lbURL+path, strings.NewReader(body))
		if err != nil {
			return ""
		}
		resp, err := hc.Do(req)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return string(bytes.TrimSpace(b))
	}
	pace := func() bool {
		t := time.NewTimer(20 * time.Millisecond)
		defer t.Stop()
		select {
		case <-stop:
			return false
		case <-t.C:
			return true
		}
	}
	wg.Go(func() {
		for i := 0; i < 50000 && pace(); i++ {
			do(pages, "GET", "/", "")
			if i%5 == 0 {
				do(pages, "POST", "/api/echo", fmt.Sprintf(`{"n":%d}`, i))
			}
		}
	})
	wg.Go(func() {
		for i := 0; i < 5000 && pace(); i++ {
			var sess struct{ ID string }
			if json.Unmarshal([]byte(do(polls, "POST", "/poll/session", "")), &sess) != nil || sess.ID == "" {
				continue
			}
			do(polls, "GET", "/poll/"+url.PathEscape(sess.ID), "")
		}
	})
	return &wg
}

// loginDashboard logs in to the dashboard with the admin token and
// returns a client that carries its session cookie.
func loginDashboard(t *testing.T, adminURL, token string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	req, err := http.NewRequest("POST", adminURL+"/ui/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", adminURL)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(adminURL + "/ui/")
	if resp.StatusCode != http.StatusOK || len(jar.Cookies(u)) == 0 {
		t.Fatalf("dashboard login: %s, cookies %v", resp.Status, jar.Cookies(u))
	}
	return hc
}
