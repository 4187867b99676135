package uisource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

// TestMain doubles as the app the controller runs: with UISOURCE_TEST_APP
// set, the test binary serves HTTP on $PORT instead of running tests.
func TestMain(m *testing.M) {
	if os.Getenv("UISOURCE_TEST_APP") == "serve" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("listening on", ln.Addr())
		http.Serve(ln, mux)
		return
	}
	goleak.VerifyTestMain(m)
}

// rig is a real controller on a temp data dir, with a Source over it.
type rig struct {
	dir  string
	st   *store.Store
	rt   *runtime.Local
	host *controller.LocalHost
	pool *pool.Pool
	ctl  *controller.Controller
	src  *Source
}

func startRig(t *testing.T, desired int) *rig {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`app: web
run:
  command: %s
  env:
    UISOURCE_TEST_APP: serve
  stop_timeout: 2s
health:
  path: /healthz
  interval: 100ms
  timeout: 100ms
  unhealthy_threshold: 2
  grace: 10s
group:
  min: 0
  max: 4
  desired: %d
  max_replacing: 2
balancer:
  listen: 127.0.0.1:0
  drain_timeout: 1s
admin:
  listen: 127.0.0.1:0
`, exe, desired)
	path := filepath.Join(dir, "shoal.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{dir: dir}
	if r.st, err = store.Open(filepath.Join(cfg.DataDir, "shoal.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.rt, err = runtime.NewLocal(runtime.Options{DataDir: cfg.DataDir}); err != nil {
		t.Fatal(err)
	}
	r.host = controller.NewLocalHost(r.rt, arts, filepath.Join(cfg.DataDir, "releases"))
	r.pool = pool.New(pool.Options{Name: "web", DrainTimeout: time.Second})
	r.ctl, err = controller.New(controller.Options{Config: cfg, Store: r.st, Artifacts: arts, Host: r.host, Pool: r.pool})
	if err != nil {
		t.Fatal(err)
	}
	// One long poll of 25 s ended just now, and three are open.
	held := timeseries.NewStore(timeseries.Options{})
	held.Record(time.Now(), "web", "", 200, 25*time.Second)
	r.src, err = New(Options{Controller: r.ctl, Host: r.host, Pool: r.pool, Store: r.st,
		Series: timeseries.NewStore(timeseries.Options{}), Slow: timeseries.NewSlow(timeseries.SlowOptions{}),
		Held: held, HeldOpen: func() int { return 3 },
		SampleInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ctlDone, srcDone := make(chan error, 1), make(chan error, 1)
	go func() { ctlDone <- r.ctl.Run(ctx) }()
	go func() { srcDone <- r.src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-srcDone; err != nil {
			t.Errorf("sampler: %v", err)
		}
		if err := <-ctlDone; err != nil {
			t.Errorf("controller: %v", err)
		}
		r.rt.Close(context.Background())
		<-r.host.Done()
		r.st.Close()
	})
	return r
}

// waitGroup polls Groups until fn accepts the group.
func (r *rig) waitGroup(t *testing.T, what string, fn func(dashboard.Group) error) dashboard.Group {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	var g dashboard.Group
	err := testenv.WaitFor(ctx, func() error {
		gs, err := r.src.Groups(ctx)
		if err != nil {
			return err
		}
		if len(gs) != 1 {
			return fmt.Errorf("%d groups, want 1", len(gs))
		}
		g = gs[0]
		return fn(g)
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v\ngroup: %+v", what, err, g)
	}
	return g
}

func serving(n int) func(dashboard.Group) error {
	return func(g dashboard.Group) error {
		in := 0
		for _, i := range g.Instances {
			if i.State == dashboard.StateInService {
				in++
			}
		}
		healthy := 0
		for _, tg := range g.Targets {
			if tg.State == "healthy" && tg.Instance != "" {
				healthy++
			}
		}
		if in != n || len(g.Instances) != n || healthy != n {
			return fmt.Errorf("%d in service, %d instances, %d healthy targets; want %d", in, len(g.Instances), healthy, n)
		}
		return nil
	}
}

func TestSourceShowsTheGroupAndItsReplacements(t *testing.T) {
	r := startRig(t, 2)
	ctx := testenv.Context(t, 60*time.Second)

	g := r.waitGroup(t, "2 instances in service with memory sampled", func(g dashboard.Group) error {
		if err := serving(2)(g); err != nil {
			return err
		}
		for _, in := range g.Instances {
			if in.RSS <= 0 {
				return fmt.Errorf("%s: no memory sample yet", in.ID)
			}
		}
		return nil
	})
	if g.App != "web" || g.Desired != 2 || g.Max != 4 || g.Release != 1 {
		t.Errorf("group = %+v", g)
	}
	if h := g.Held; h == nil || h.Open != 3 || h.Ended != 1 || h.Median < 20*time.Second || h.Median > 30*time.Second || h.Window != heldWindow {
		t.Errorf("held streams = %+v, want 3 open and one of about 25s ended", h)
	}
	for _, in := range g.Instances {
		if !strings.HasPrefix(in.Health, "passing: status 200") || in.Addr == "" || in.Host != "local" || in.Release != 1 {
			t.Errorf("instance %+v", in)
		}
	}
	ids := []string{g.Instances[0].ID, g.Instances[1].ID}

	// CPU is a rate between two samples: it shows once two were taken.
	err := testenv.WaitFor(ctx, func() error {
		for _, id := range ids {
			if _, ok := r.src.latest(timeseries.InstanceCPU(id)); !ok {
				return fmt.Errorf("no CPU gauge for %s", id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := r.src.LogTail(ctx, ids[0], 10, false, &buf); err != nil || !strings.Contains(buf.String(), "listening on") {
		t.Errorf("LogTail = %v, %q", err, buf.String())
	}
	if err := r.src.LogTail(ctx, "web-nope", 10, false, &buf); !errors.Is(err, dashboard.ErrNotFound) {
		t.Errorf("LogTail of an unknown instance: %v", err)
	}

	// Kill one: it is replaced, the kill shows as a replacement event, its
	// page still tells what happened, and its gauges go.
	var pid int
	for _, is := range r.ctl.Status().Instances {
		if is.ID == ids[0] {
			pid = is.PID
		}
	}
	if pid == 0 {
		t.Fatal("no pid for", ids[0])
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.waitGroup(t, "a replacement in service", func(g dashboard.Group) error {
		if err := serving(2)(g); err != nil {
			return err
		}
		for _, in := range g.Instances {
			if in.ID == ids[0] {
				return fmt.Errorf("%s still listed", ids[0])
			}
		}
		return nil
	})
	// The controller stores events asynchronously: wait for the kill's.
	var evs []dashboard.Event
	var d dashboard.InstanceDetail
	err = testenv.WaitFor(ctx, func() error {
		var err error
		if evs, err = r.src.Events(ctx, 0, 500); err != nil {
			return err
		}
		var replaced bool
		for _, e := range evs {
			if e.Kind == dashboard.KindReplace && e.Instance == ids[0] && strings.Contains(e.Reason, "failed: process killed") {
				replaced = true
			}
		}
		if !replaced {
			return fmt.Errorf("no replace event for %s in %+v", ids[0], evs)
		}
		if d, err = r.src.Instance(ctx, ids[0]); err != nil {
			return err
		}
		if d.State != dashboard.StateFailed || d.App != "web" || len(d.Events) < 3 || d.Addr == "" {
			return fmt.Errorf("killed instance = %+v", d)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for _, e := range evs {
		if e.App != "web" {
			t.Errorf("event of app %q", e.App)
		}
	}
	if _, err := r.src.Instance(ctx, "web-nope"); !errors.Is(err, dashboard.ErrNotFound) {
		t.Errorf("Instance of an unknown id: %v", err)
	}
	err = testenv.WaitFor(ctx, func() error {
		now := time.Now()
		for _, name := range []string{timeseries.InstanceCPU(ids[0]), timeseries.InstanceRSS(ids[0])} {
			for _, p := range r.src.Series().Gauge(name, now.Add(-time.Minute), now.Add(time.Second), time.Second) {
				if p.OK {
					return fmt.Errorf("gauge %s still kept", name)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// Events(0, n) is the newest n, oldest first.
	if len(evs) < 4 {
		t.Fatalf("only %d events", len(evs))
	}
	// The group may still record events (a health check turning a new
	// instance in service): compare reads that no new event came between.
	var last3, all []dashboard.Event
	err = testenv.WaitFor(ctx, func() error {
		before, err := r.src.Events(ctx, 0, 500)
		if err != nil {
			return err
		}
		if last3, err = r.src.Events(ctx, 0, 3); err != nil {
			return err
		}
		if all, err = r.src.Events(ctx, 0, 500); err != nil {
			return err
		}
		if len(before) != len(all) || before[len(before)-1].Seq != all[len(all)-1].Seq {
			return errors.New("new events between the reads")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := all[len(all)-3:]
	if len(last3) != 3 || last3[0].Seq != want[0].Seq || last3[2].Seq != want[2].Seq {
		t.Errorf("Events(0, 3) = %+v, want the newest 3 %+v", last3, want)
	}
	after, err := r.src.Events(ctx, want[1].Seq, 100)
	if err != nil || len(after) == 0 || after[0].Seq != want[2].Seq {
		t.Errorf("Events(after %d) = %+v, %v", want[1].Seq, after, err)
	}

	rels, err := r.src.Releases(ctx, "web")
	if err != nil || len(rels) != 1 || rels[0].Status != "current" || rels[0].Change != "first release" {
		t.Errorf("Releases = %+v, %v", rels, err)
	}
	if _, err := r.src.Releases(ctx, "other"); !errors.Is(err, dashboard.ErrNotFound) {
		t.Errorf("Releases of another app: %v", err)
	}
	if err := r.src.Rollback(ctx, "other", 1); !errors.Is(err, dashboard.ErrNotFound) {
		t.Errorf("Rollback of another app: %v", err)
	}
}

func TestSourceDeployAndRollback(t *testing.T) {
	r := startRig(t, 2)
	ctx := testenv.Context(t, 60*time.Second)
	r.waitGroup(t, "2 in service", serving(2))

	// A code change and a deploy: v2.
	if err := os.WriteFile(filepath.Join(r.dir, "changed.txt"), []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What `shoal deploy` does before it calls the admin API: load, resolve
	// the env, build into the artifact store the controller uses.
	cfg, err := config.Load(filepath.Join(r.dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := cfg.Env(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := cfg.BuildSpec(nil)
	if err != nil {
		t.Fatal(err)
	}
	art, _, err := arts.BuildOnce(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	var sent []api.EnvVar
	for _, e := range env {
		sent = append(sent, api.EnvVar{Name: e.Name, Value: e.Value, Secret: e.Secret})
	}
	v, err := r.ctl.Deploy(ctx, controller.DeployRequest{Config: cfg, Env: sent, Digest: art.Digest})
	if err != nil || v != 2 {
		t.Fatalf("Deploy = %d, %v", v, err)
	}
	rels, err := r.src.Releases(ctx, "web")
	if err != nil || len(rels) != 2 || rels[0].Version != 2 || rels[0].Status != "current" ||
		rels[1].Status != "previous" || !strings.HasPrefix(rels[0].Change, "new build ") {
		t.Fatalf("Releases after deploy = %+v, %v", rels, err)
	}

	// Errors keep their meaning for the dashboard.
	if err := r.src.Rollback(ctx, "web", 99); !errors.Is(err, dashboard.ErrNotFound) {
		t.Errorf("Rollback to v99: %v", err)
	}
	if err := r.src.Rollback(ctx, "web", 2); !errors.Is(err, dashboard.ErrConflict) {
		t.Errorf("Rollback to the current release: %v", err)
	}

	// Rollback returns once the rollout has started; the group then
	// shows it, and it ends on v1.
	if err := r.src.Rollback(ctx, "web", 1); err != nil {
		t.Fatalf("Rollback to v1: %v", err)
	}
	g := r.waitGroup(t, "back on v1", func(g dashboard.Group) error {
		if err := serving(2)(g); err != nil {
			return err
		}
		for _, in := range g.Instances {
			if in.Release != 1 {
				return fmt.Errorf("%s runs v%d", in.ID, in.Release)
			}
		}
		if g.Deploy == nil || g.Deploy.Active {
			return fmt.Errorf("deploy %+v", g.Deploy)
		}
		return nil
	})
	if d := g.Deploy; d.From != 2 || d.To != 1 || !d.Rollback || d.Phase != "done" || d.Done != 2 || d.Total != 2 || g.Release != 1 {
		t.Errorf("last deploy = %+v, group release v%d", d, g.Release)
	}
	rels, err = r.src.Releases(ctx, "web")
	if err != nil || rels[1].Version != 1 || rels[1].Status != "current" {
		t.Errorf("Releases after rollback = %+v, %v", rels, err)
	}
	evs, err := r.src.Events(ctx, 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	var deploys int
	for _, e := range evs {
		if e.Kind == dashboard.KindDeploy {
			deploys++
		}
	}
	if deploys < 3 {
		t.Errorf("%d deploy events in %+v", deploys, evs)
	}
}
