package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// httpBackend is an httptest server that answers with its name.
func httpBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend %s\n", name)
	}))
	t.Cleanup(s.Close)
	return s
}

func serverAddr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// lbConfig returns an lb.yaml with one listener on a free port, one route
// and one pool of the given targets; extra is appended to the pool.
func lbConfig(dir string, targets []string, poolExtra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listeners:\n  - name: web\n    listen: 127.0.0.1:0\nroutes:\n  - name: all\n    pool: app\npools:\n  - name: app\n    targets:\n")
	for _, t := range targets {
		fmt.Fprintf(&b, "      - addr: %s\n", t)
	}
	b.WriteString(poolExtra)
	fmt.Fprintf(&b, "admin:\n  listen: 127.0.0.1:0\n  token_file: %s\n", filepath.Join(dir, "admin.token"))
	return b.String()
}

// lbProc is a running "shoal lb".
type lbProc struct {
	*testenv.Process
	bin, cfg  string
	web       string // http://127.0.0.1:PORT
	admin     string // http://127.0.0.1:PORT
	tokenFile string
}

// startLB writes src as lb.yaml in dir, starts shoal lb on it and waits
// for the web and admin listeners.
func startLB(t *testing.T, ctx context.Context, dir, src string) *lbProc {
	t.Helper()
	bin := testenv.BuildShoal(t)
	cfg := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &lbProc{Process: testenv.Start(t, bin, "lb", "-c", cfg), bin: bin, cfg: cfg, tokenFile: filepath.Join(dir, "admin.token")}
	for _, l := range []struct {
		name string
		dst  *string
	}{{"web", &p.web}, {"admin", &p.admin}} {
		m, err := p.WaitForLine(ctx, regexp.MustCompile(`msg=listening listener=`+l.name+` addr=(\S+)`))
		if err != nil {
			t.Fatalf("shoal lb did not start: %v", err)
		}
		*l.dst = "http://" + m[1]
	}
	return p
}

// httpGet returns the status and body of GET url.
func httpGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// countAnswers sends n requests and counts answers by body.
func countAnswers(t *testing.T, ctx context.Context, url string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		code, body, err := httpGet(ctx, url)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET %s: %d %q %v", url, code, body, err)
		}
		out[strings.TrimSpace(body)]++
	}
	return out
}

// runShoalCmd runs the shoal binary to completion and returns its exit code,
// stdout and stderr.
func runShoalCmd(t *testing.T, ctx context.Context, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String(), errb.String()
		}
		t.Fatalf("run shoal %v: %v", args, err)
	}
	return 0, out.String(), errb.String()
}

func TestLBProxiesReloadsAndStopsCleanly(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	a, b, c := httpBackend(t, "a"), httpBackend(t, "b"), httpBackend(t, "c")
	p := startLB(t, ctx, dir, lbConfig(dir, []string{serverAddr(a), serverAddr(b)}, ""))

	// Round robin over both targets.
	if got := countAnswers(t, ctx, p.web+"/", 20); got["backend a"] != 10 || got["backend b"] != 10 {
		t.Fatalf("round robin over a and b: %v", got)
	}

	// Every admin call needs the token.
	if code, _, err := httpGet(ctx, p.admin+"/v1/lb/status"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("admin without token: %d %v", code, err)
	}

	// shoal lb status prints both targets in a table.
	code, out, errOut := runShoalCmd(t, ctx, p.bin, "lb", "status", "-admin", p.admin, "-token-file", p.tokenFile)
	if code != 0 {
		t.Fatalf("lb status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"POOL", "REASON", serverAddr(a), serverAddr(b), "healthy"} {
		if !strings.Contains(out, want) {
			t.Errorf("lb status output lacks %q:\n%s", want, out)
		}
	}

	// A valid file on SIGHUP replaces the targets.
	mark := p.Mark()
	if err := os.WriteFile(p.cfg, []byte(lbConfig(dir, []string{serverAddr(c)}, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg=reloaded`)); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, func() error {
		if got := countAnswers(t, ctx, p.web+"/", 6); got["backend c"] != 6 {
			return fmt.Errorf("after reload: %v", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// An invalid file on SIGHUP is rejected with its reason; c still serves.
	mark = p.Mark()
	bad := strings.Replace(lbConfig(dir, []string{serverAddr(c)}, ""), "pool: app", "pool: nope", 1)
	if err := os.WriteFile(p.cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m, _, err := p.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg="reload rejected.*unknown pool`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m[0], "lb.yaml:6:") {
		t.Errorf("rejection does not point at the line: %s", m[0])
	}
	if got := countAnswers(t, ctx, p.web+"/", 4); got["backend c"] != 4 {
		t.Fatalf("after rejected reload: %v", got)
	}

	// SIGTERM drains and exits 0.
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit after SIGTERM: %d %v", code, err)
	}
	if _, err := p.WaitForLine(ctx, regexp.MustCompile(`msg=stopped`)); err != nil {
		t.Fatal(err)
	}
}

func TestLBAdminVerbs(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	a, b := httpBackend(t, "a"), httpBackend(t, "b")
	p := startLB(t, ctx, dir, lbConfig(dir, []string{serverAddr(a)}, ""))
	run := func(args ...string) string {
		t.Helper()
		args = append([]string{"lb", args[0], "-admin", p.admin, "-token-file", p.tokenFile}, args[1:]...)
		code, out, errOut := runShoalCmd(t, ctx, p.bin, args...)
		if code != 0 {
			t.Fatalf("shoal %v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	run("add", "-weight", "3", "app", serverAddr(b))
	if got := countAnswers(t, ctx, p.web+"/", 8); got["backend a"] != 2 || got["backend b"] != 6 {
		t.Fatalf("weights 1:3: %v", got)
	}
	run("weight", "app", serverAddr(b), "1")
	if got := countAnswers(t, ctx, p.web+"/", 8); got["backend a"] != 4 || got["backend b"] != 4 {
		t.Fatalf("weights 1:1: %v", got)
	}
	if out := run("drain", "app", serverAddr(a), "-wait"); !strings.Contains(out, "idle") {
		t.Fatalf("drain -wait: %q", out)
	}
	if got := countAnswers(t, ctx, p.web+"/", 4); got["backend b"] != 4 {
		t.Fatalf("after draining a: %v", got)
	}
	if out := run("status"); !regexp.MustCompile(regexp.QuoteMeta(serverAddr(a)) + `\s+draining`).MatchString(out) {
		t.Fatalf("status after drain:\n%s", out)
	}
	run("remove", "-wait", "app", serverAddr(a))
	if out := run("status"); strings.Contains(out, serverAddr(a)) {
		t.Fatalf("status after remove still lists %s:\n%s", serverAddr(a), out)
	}
	run("maintenance", "-retry-after", "30s", "on")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.web+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("maintenance: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	run("maintenance", "off")
	if got := countAnswers(t, ctx, p.web+"/", 2); got["backend b"] != 2 {
		t.Fatalf("after maintenance off: %v", got)
	}
	if out := run("reload"); !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: %q", out)
	}
	// Unknown pool: exit 1 with the server's message.
	code, _, errOut := runShoalCmd(t, ctx, p.bin, "lb", "add", "-admin", p.admin, "-token-file", p.tokenFile, "nope", "127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, `no pool named "nope"`) {
		t.Fatalf("add to unknown pool: exit %d, %q", code, errOut)
	}
	p.Signal(syscall.SIGTERM)
	if code, err := p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit after SIGTERM: %d %v", code, err)
	}
}

func TestLBBadConfigExits2WithEveryProblem(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	bin := testenv.BuildShoal(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lb.yaml")
	src := "listeners:\n  - name: web\n    listen: nowhere\nroutes:\n  - name: r\n    pool: missing\npools:\n  - name: p\n    targets: [{addr: '127.0.0.1:1', weight: 999}]\n"
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runShoalCmd(t, ctx, bin, "lb", "-c", cfg)
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", code, errOut)
	}
	for _, want := range []string{cfg + ":3:13: listeners[0].listen", cfg + ":6:11: routes[0].pool: unknown pool", cfg + ":9:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// TestLBDeprecatedKeysWarnAndWork: an lb.yaml written with the keys'
// old names (listeners[].addr, admin.addr, pools[].health_check) still
// runs, and shoal lb logs one warning per old key, at start and at each
// reload, naming file:line:col and the new key.
func TestLBDeprecatedKeysWarnAndWork(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	a := httpBackend(t, "a")
	src := lbConfig(dir, []string{serverAddr(a)}, "    health_check:\n      path: /\n      interval: 1s\n      timeout: 1s\n")
	src = strings.ReplaceAll(src, "listen: ", "addr: ")
	p := startLB(t, ctx, dir, src)
	warnings := []*regexp.Regexp{
		regexp.MustCompile(`level=WARN msg="deprecated configuration key" warning=".*lb\.yaml:3:5: listeners\[0\]\.addr: \\"addr\\" is a deprecated name: rename it to \\"listen\\"`),
		regexp.MustCompile(`level=WARN msg="deprecated configuration key" warning=".*lb\.yaml:11:5: pools\[0\]\.health_check: \\"health_check\\" is a deprecated name: rename it to \\"health\\"`),
		regexp.MustCompile(`level=WARN msg="deprecated configuration key" warning=".*lb\.yaml:16:3: admin\.addr: \\"addr\\" is a deprecated name: rename it to \\"listen\\"`),
	}
	for _, re := range warnings {
		if _, err := p.WaitForLine(ctx, re); err != nil {
			t.Fatalf("no warning matching %s: %v\n%s", re, err, p.Output())
		}
	}
	if err := testenv.WaitFor(ctx, func() error {
		if code, body, err := httpGet(ctx, p.web+"/"); err != nil || code != http.StatusOK || body != "backend a\n" {
			return fmt.Errorf("GET through the balancer: %d %q %v", code, body, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	mark := p.Mark()
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg=reloaded`)); err != nil {
		t.Fatal(err)
	}
	for _, re := range warnings {
		if _, _, err := p.WaitForLineFrom(ctx, mark, re); err != nil {
			t.Fatalf("reload: no warning matching %s: %v", re, err)
		}
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit after SIGTERM: %d %v", code, err)
	}
}
