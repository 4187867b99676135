package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestMain doubles as the app under test: with DAEMON_TEST_APP set, the
// test binary serves HTTP on $PORT instead of running tests. Otherwise it
// runs the tests and fails the run if goroutines outlive them.
func TestMain(m *testing.M) {
	// The agent's detached runtime runs each instance under a shim, this
	// binary started again.
	if code, ok := runtime.ShimMain(); ok {
		os.Exit(code)
	}
	// A vip's keepalived guard (lbvip_guard_test.go) is this binary too.
	if code, ok := VIPGuardMain(); ok {
		os.Exit(code)
	}
	// The fleet's instances (server_test.go): an HTTP server on
	// $HOST:$PORT answering with the artifact's version.txt.
	agenttest.MaybeServe()
	if os.Getenv("DAEMON_TEST_APP") == "serve" {
		serveTestApp()
		return
	}
	goleak.VerifyTestMain(m)
}

func serveTestApp() {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", os.Getenv("SHOAL_INSTANCE_ID"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.Serve(ln, mux)
}

// writeApp writes a shoal.yaml for this test binary as the app, with the
// balancer on lbAddr and the admin API on adminAddr, and loads it.
func writeApp(t *testing.T, dir, lbAddr, adminAddr string) *config.App {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`app: web
run:
  command: %s
  env:
    DAEMON_TEST_APP: serve
  stop_timeout: 2s
health:
  path: /healthz
  interval: 200ms
  timeout: 200ms
  grace: 20s
group:
  desired: 1
balancer:
  listen: %s
  drain_timeout: 1s
admin:
  listen: %s
`, exe, lbAddr, adminAddr)
	path := filepath.Join(dir, "shoal.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestUpServesAndReleasesEverything: OpenUp binds both listeners and
// writes admin.url; Run builds v1, starts an instance, calls OnReady with
// the real addresses, serves through the balancer and the admin API
// (token required, dashboard outside it), and after its context ends
// returns nil with the sockets closed, admin.url removed and the store's
// lock released.
func TestUpServesAndReleasesEverything(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	cfg := writeApp(t, dir, "127.0.0.1:0", "127.0.0.1:0")
	ready := make(chan Ready, 1)
	u, err := OpenUp(ctx, UpOptions{Config: cfg, OnReady: func(r Ready) { ready <- r }})
	if err != nil {
		t.Fatal(err)
	}
	web, admin := u.Addr().String(), u.AdminAddr().String()
	urlFile := filepath.Join(cfg.DataDir, AdminURLFile)
	if b, err := os.ReadFile(urlFile); err != nil || string(b) != "http://"+admin+"\n" {
		t.Errorf("admin.url = %q, %v; want http://%s", b, err, admin)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- u.Run(runCtx) }()

	var r Ready
	select {
	case r = <-ready:
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("not ready in time")
	}
	if r.App != "web" || r.Release != 1 || r.BalancerURL != "http://"+web || r.AdminURL != "http://"+admin {
		t.Errorf("ready = %+v; want app web, v1 on %s, admin %s", r, web, admin)
	}
	if code, body, err := get(ctx, r.BalancerURL+"/"); err != nil || code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Errorf("through the balancer: %d %q %v", code, body, err)
	}
	if code, _, err := get(ctx, r.AdminURL+"/v1/status"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("admin API without a token: %d %v; want 401", code, err)
	}
	if code, _, err := get(ctx, r.AdminURL+"/ui/login"); err != nil || code != http.StatusOK {
		t.Errorf("dashboard login page: %d %v; want 200", code, err)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	for _, addr := range []string{web, admin} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still listening after Run", addr)
		}
	}
	if _, err := os.Stat(urlFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin.url left after Run: %v", err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, StoreFile), store.Options{})
	if err != nil {
		t.Fatalf("store after Run: %v", err)
	}
	st.Close()
}

// TestOpenUpReturnsBindErrorAndReleases: a port in use fails OpenUp at
// once and leaves nothing held: the store opens again, no admin.url, and
// the other listener is closed; Close releases an Up that never ran.
func TestOpenUpReturnsBindErrorAndReleases(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct{ name, lb, admin, want string }{
		{"balancer", busy.Addr().String(), "127.0.0.1:0", "balancer: "},
		{"admin", "127.0.0.1:0", busy.Addr().String(), "admin api: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeApp(t, t.TempDir(), c.lb, c.admin)
			u, err := OpenUp(ctx, UpOptions{Config: cfg})
			if err == nil {
				u.Close()
				t.Fatal("OpenUp on a port in use succeeded")
			}
			if !strings.HasPrefix(err.Error(), c.want) || !strings.Contains(err.Error(), busy.Addr().String()) {
				t.Errorf("error %q; want %q and the address", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(cfg.DataDir, AdminURLFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("admin.url after a failed OpenUp: %v", err)
			}
			st, err := store.Open(filepath.Join(cfg.DataDir, StoreFile), store.Options{})
			if err != nil {
				t.Fatalf("store after a failed OpenUp: %v", err)
			}
			st.Close()
		})
	}

	cfg := writeApp(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0")
	u, err := OpenUp(ctx, UpOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	web, admin := u.Addr().String(), u.AdminAddr().String()
	u.Close()
	for _, addr := range []string{web, admin} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still listening after Close", addr)
		}
	}
	if err := u.Run(ctx); err == nil {
		t.Error("Run after Close succeeded")
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, StoreFile), store.Options{})
	if err != nil {
		t.Fatalf("store after Close: %v", err)
	}
	st.Close()
}
