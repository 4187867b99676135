package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestMain doubles as the app under test: with CONTROLLER_TEST_APP set, the
// test binary serves HTTP on $PORT instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("CONTROLLER_TEST_APP") {
	case "serve":
		serveTestApp()
		return
	case "crash":
		os.Exit(3)
	}
	goleak.VerifyTestMain(m)
}

// serveTestApp answers / and /healthz; POST /unhealthy makes /healthz
// answer 500 from then on.
func serveTestApp() {
	var sick atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /unhealthy", func(w http.ResponseWriter, r *http.Request) { sick.Store(true) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", os.Getenv("SHOAL_INSTANCE_ID"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening on", ln.Addr(), "secret", os.Getenv("API_KEY"))
	http.Serve(ln, mux)
}

// harness is a controller wired to real parts on a temp data dir.
type harness struct {
	t      *testing.T
	dir    string
	cfg    *config.App
	st     *store.Store
	rt     *runtime.Local
	host   *LocalHost
	pool   *pool.Pool
	c      *Controller
	cancel context.CancelFunc
	done   chan error
}

func writeApp(t *testing.T, dir, mode string, desired, max int) *config.App {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "index.txt"), []byte("artifact\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".secrets"), []byte("API_KEY=sekrit-value-123\n"), 0o600)
	yml := fmt.Sprintf(`app: web
run:
  command: %s
  env:
    CONTROLLER_TEST_APP: %s
  secrets_file: .secrets
  stop_timeout: 2s
health:
  path: /healthz
  interval: 100ms
  timeout: 100ms
  unhealthy_threshold: 2
  grace: 5s
group:
  min: 0
  max: %d
  desired: %d
  max_replacing: 2
balancer:
  listen: 127.0.0.1:0
  drain_timeout: 1s
admin:
  listen: 127.0.0.1:0
keep_releases: 2
`, exe, mode, max, desired)
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

func start(t *testing.T, dir string, cfg *config.App) *harness {
	t.Helper()
	return startWithPool(t, dir, cfg, pool.Options{Name: "web", DrainTimeout: time.Second})
}

// startWithPool is start with the balancer pool made from popts.
func startWithPool(t *testing.T, dir string, cfg *config.App, popts pool.Options) *harness {
	t.Helper()
	return startOn(t, dir, cfg, popts, nil)
}

// startOn is startWithPool with the controller's Host wrapped by wrap
// (nil: the LocalHost itself), for a test that watches the calls.
func startOn(t *testing.T, dir string, cfg *config.App, popts pool.Options, wrap func(*LocalHost) Host) *harness {
	t.Helper()
	return startEdited(t, dir, cfg, popts, wrap, nil)
}

// startEdited is startOn with the controller's Options changed by edit
// (nil: none) before New.
func startEdited(t *testing.T, dir string, cfg *config.App, popts pool.Options, wrap func(*LocalHost) Host, edit func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: dir, cfg: cfg, done: make(chan error, 1)}
	var err error
	h.st, err = store.Open(filepath.Join(cfg.DataDir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.rt, err = runtime.NewLocal(runtime.Options{DataDir: cfg.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	h.rt.CleanLeftovers(context.Background())
	host := NewLocalHost(h.rt, arts, filepath.Join(cfg.DataDir, "releases"))
	h.host = host
	h.pool = pool.New(popts)
	var onHost Host = host
	if wrap != nil {
		onHost = wrap(host)
	}
	o := Options{Config: cfg, Store: h.st, Artifacts: arts, Host: onHost, Pool: h.pool}
	if edit != nil {
		edit(&o)
	}
	h.c, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.c.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop ends Run and closes everything; safe to call twice.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.rt.Close(context.Background())
	<-h.host.Done()
	h.st.Close()
}

func (h *harness) waitFor(what string, fn func(api.Status) error) api.Status {
	h.t.Helper()
	ctx := testenv.Context(h.t, 30*time.Second)
	var st api.Status
	err := testenv.WaitFor(ctx, func() error {
		st = h.c.Status()
		return fn(st)
	})
	if err != nil {
		h.t.Fatalf("waiting for %s: %v\nstatus: %+v", what, err, st)
	}
	return st
}

func inService(n int) func(api.Status) error {
	return func(st api.Status) error {
		if st.InService != n || len(st.Instances) != n {
			return fmt.Errorf("%d in service of %d instances, want %d", st.InService, len(st.Instances), n)
		}
		return nil
	}
}

func poolAddrs(p *pool.Pool) map[string]string {
	out := map[string]string{}
	for _, t := range p.Status().Targets {
		out[t.Addr] = t.State
	}
	return out
}

func TestUpKillReplaceScaleRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 2, 3)
	h := start(t, dir, cfg)
	select {
	case <-h.c.Ready():
	case err := <-h.done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-testenv.Context(t, 30*time.Second).Done():
		t.Fatal("not ready in time")
	}
	st := h.waitFor("2 in service", inService(2))
	if st.Release != 1 {
		t.Fatalf("release = %d, want 1", st.Release)
	}
	if got := poolAddrs(h.pool); len(got) != 2 {
		t.Fatalf("pool = %v", got)
	}

	// kill -9 one instance: it is replaced and leaves the pool.
	victim := st.Instances[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = h.waitFor("replacement", func(st api.Status) error {
		if err := inService(2)(st); err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.ID == victim.ID {
				return errors.New("victim still listed")
			}
		}
		if _, ok := poolAddrs(h.pool)[victim.Addr]; ok {
			return errors.New("victim still in pool")
		}
		return nil
	})

	// An instance that turns unhealthy is replaced, then retired.
	sick := st.Instances[0]
	resp, err := http.Post("http://"+sick.Addr+"/unhealthy", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h.waitFor("unhealthy replaced", func(st api.Status) error {
		if err := inService(2)(st); err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.ID == sick.ID {
				return fmt.Errorf("sick instance still %s", in.State)
			}
		}
		return nil
	})

	// Scale within and outside the bounds.
	if err := h.c.Scale(context.Background(), 4); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Scale(4) = %v, want ErrOutOfRange", err)
	}
	if err := h.c.Scale(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	h.waitFor("3 in service", inService(3))
	if err := h.c.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	st = h.waitFor("1 in service", inService(1))

	// Events tell the story, with reasons and without the secret. They
	// are stored asynchronously: wait for them.
	waitEvents(t, h.c, "made release v1", "process killed by SIGKILL", "failed 2 health checks in a row",
		"replace unhealthy instance "+sick.ID, "desired 3 -> 1", "scale down to 1")
	if ev := eventsText(t, h.c); strings.Contains(ev, "sekrit") {
		t.Errorf("secret in events:\n%s", ev)
	}
	// Logs are redacted.
	var logs strings.Builder
	if err := h.c.Logs(context.Background(), st.Instances[0].ID, 10, false, &logs); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "sekrit-value-123") || !strings.Contains(logs.String(), config.RedactedValue) {
		t.Errorf("logs not redacted: %q", logs.String())
	}
	rels, err := h.c.Releases()
	if err != nil || len(rels) != 1 || !rels[0].Current {
		t.Fatalf("releases = %+v, %v", rels, err)
	}
	for _, e := range rels[0].Env {
		if strings.Contains(e, "sekrit") {
			t.Errorf("release env not redacted: %s", e)
		}
	}

	// Shut down: every instance stops and leaves the pool.
	pids := []int{st.Instances[0].PID}
	h.stop()
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("pid %d still alive after shutdown", pid)
		}
	}
	if got := poolAddrs(h.pool); len(got) != 0 {
		t.Errorf("pool after shutdown = %v", got)
	}

	// A restart comes back to the same release and the scaled count.
	h2 := start(t, dir, cfg)
	st = h2.waitFor("restart", inService(1))
	if st.Release != 1 || st.Desired != 1 {
		t.Fatalf("after restart: release %d desired %d, want 1 and 1", st.Release, st.Desired)
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "crash", 1, 1)
	h := start(t, dir, cfg)
	st := h.waitFor("backoff", func(st api.Status) error {
		if !strings.Contains(st.Backoff, "crashed") {
			return fmt.Errorf("backoff = %q", st.Backoff)
		}
		return nil
	})
	if !strings.Contains(st.Backoff, "release v1 crashed") || !strings.Contains(st.Backoff, "next launch in") {
		t.Fatalf("backoff = %q", st.Backoff)
	}
	// Events are stored asynchronously: wait for the backoff's.
	err := testenv.WaitFor(testenv.Context(t, 30*time.Second), func() error {
		evs, err := h.c.Events(0, 1000)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == "backoff" {
				return nil
			}
		}
		return fmt.Errorf("no backoff event in %+v", evs)
	})
	if err != nil {
		t.Fatal(err)
	}
}
