package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestSeqOf(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want int
		ok   bool
	}{
		{"web-v3-abc1237", 7, true},
		{"web-v12-zzzzzz1234", 1234, true},
		{"web-v1-00000099", 99, true},
		{"web-v1-abcdef", 0, false},  // no counter
		{"web-v1-abcdefx", 0, false}, // not a number
		{"api-v1-abcdef1", 0, false}, // another app
		{"web-0", 0, false},
		{"web-v1", 0, false},
	} {
		got, ok := seqOf("web", tc.id)
		if got != tc.want || ok != tc.ok {
			t.Errorf("seqOf(%q) = %d, %v; want %d, %v", tc.id, got, ok, tc.want, tc.ok)
		}
	}
}

// adoptingHost is a LocalHost that adopts what its runtime runs, as a
// fleet's Host adopts what its agents run: a stand-in for the agents'
// side, which outlives the controller.
type adoptingHost struct {
	*LocalHost
	rt *runtime.Local
	st *store.Store
}

func (a adoptingHost) Adopt(ctx context.Context, app string) ([]Adopted, error) {
	var out []Adopted
	for _, in := range a.rt.List() {
		if in.Labels["app"] != app {
			continue
		}
		v, err := strconv.Atoi(in.Labels["release"])
		if err != nil {
			return nil, err
		}
		r, err := a.st.GetRelease(app, v)
		if err != nil {
			return nil, err
		}
		out = append(out, Adopted{ID: in.ID, Release: v, Digest: r.Digest,
			Running: Running{Addr: in.Addr, PID: in.PID, Started: in.StartedAt, Host: "local"}})
	}
	return out, nil
}

// TestAdoptMidRollout stops a controller that leaves its instances running
// in the middle of a rollout, with instances of both releases serving,
// and starts another one that adopts them: the rollout resumes and
// finishes on the new release, and the new release's instance that served
// before the restart keeps serving through it, with its pid.
func TestAdoptMidRollout(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 2, 3)
	// Several passing checks in a row before an instance serves: an
	// adopted instance is out of service for a few tens of milliseconds
	// after the restart, long enough for a rollout that does not wait for
	// it to drain it.
	cfg = withHealthyThreshold(t, dir, 6)
	st, err := store.Open(filepath.Join(cfg.DataDir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.NewLocal(runtime.Options{DataDir: cfg.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	local := NewLocalHost(rt, arts, filepath.Join(cfg.DataDir, "releases"))
	defer func() {
		rt.Close(context.Background())
		<-local.Done()
	}()
	host := adoptingHost{LocalHost: local, rt: rt, st: st}
	run := func(leave bool) *harness {
		h := &harness{t: t, dir: dir, cfg: cfg, st: st, rt: rt, host: local, done: make(chan error, 1),
			pool: pool.New(pool.Options{Name: "web", DrainTimeout: time.Second})}
		h.c, err = New(Options{Config: cfg, Store: st, Artifacts: arts, Host: host, Pool: h.pool, LeaveRunning: leave})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel = cancel
		go func() { h.done <- h.c.Run(ctx) }()
		return h
	}
	end := func(h *harness) {
		if h.cancel == nil {
			return
		}
		h.cancel()
		h.cancel = nil
		if err := <-h.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}

	h1 := run(true)
	defer end(h1)
	h1.waitFor("v1 serving", onRelease(1, 2))
	cfg = slowBoot(t, dir, cfg, "1")
	h1.cfg = cfg
	deployed := make(chan error, 1)
	go func() {
		_, err := h1.deploy(testenv.Context(t, 60*time.Second), DeployRequest{By: "alice@laptop"})
		deployed <- err
	}()
	// Stop when a v2 instance serves next to a v1 one.
	var v1, v2 api.RolloutInstance
	ctx := testenv.Context(t, 30*time.Second)
	err = testenv.WaitFor(ctx, func() error {
		p := h1.c.Rollout()
		if p == nil {
			return errors.New("no rollout yet")
		}
		v1, v2 = api.RolloutInstance{}, api.RolloutInstance{}
		for _, in := range p.Instances {
			if in.State == api.InService && in.Release == 1 {
				v1 = in
			}
			if in.State == api.InService && in.Release == 2 {
				v2 = in
			}
		}
		if v1.ID == "" || v2.ID == "" {
			return fmt.Errorf("not one of each release in service: %+v", p.Instances)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	end(h1)
	if err := <-deployed; err == nil {
		t.Fatal("the interrupted deploy reported success")
	}
	pids := map[string]int{}
	for _, in := range rt.List() {
		pids[in.ID] = in.PID
	}
	if _, ok := pids[v2.ID]; !ok {
		t.Fatalf("%s no longer runs after the controller ended: %v", v2.ID, pids)
	}

	h2 := run(false)
	defer end(h2)
	waitEvents(t, h2.c, "resuming deploy of v2 interrupted by a restart", "adopted instance "+v2.ID+" (v2) on host local", "-> v2 ended done")
	final := h2.waitFor("v2 serving after the restart", onRelease(2, 2))
	found := false
	for _, in := range final.Instances {
		if in.ID == v2.ID {
			found = true
			if in.PID != pids[v2.ID] {
				t.Errorf("%s runs as pid %d, was %d before the restart", in.ID, in.PID, pids[v2.ID])
			}
		}
	}
	if !found {
		t.Errorf("the adopted %s does not serve at the end: %+v", v2.ID, final.Instances)
	}
	// The resumed rollout waited for the adopted v1 instance's checks
	// instead of draining it at once as an old instance out of service.
	evs, err := h2.c.Events(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	served := false
	for _, ev := range evs {
		served = served || ev.Instance == v1.ID && ev.State == api.InService.String() && strings.HasPrefix(ev.Reason, "adopted and healthy")
	}
	if !served {
		t.Errorf("the adopted v1 instance %s was never in service after the restart:\n%s", v1.ID, eventsText(t, h2.c))
	}
}

// withHealthyThreshold sets health.healthy_threshold in dir's shoal.yaml
// and returns the config loaded again.
func withHealthyThreshold(t *testing.T, dir string, n int) *config.App {
	t.Helper()
	p := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "  unhealthy_threshold: 2\n", fmt.Sprintf("  unhealthy_threshold: 2\n  healthy_threshold: %d\n", n), 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
