package controller

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// writeAutoscaleApp is writeApp with min 1 and an in-flight policy: one
// request in flight per instance, fast evaluation and short windows.
func writeAutoscaleApp(t *testing.T, dir string) *config.App {
	t.Helper()
	cfg := writeApp(t, dir, "serve", 1, 4)
	b, err := os.ReadFile(cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	yml := strings.Replace(string(b), "  min: 0\n", "  min: 1\n", 1) + `autoscale:
  interval: 100ms
  window: 500ms
  warmup: 300ms
  cooldown_out: 1s
  cooldown_in: 100ms
  stabilization: 1s
  policies:
    - {name: busy, metric: inflight_per_instance, target: 1}
`
	if err := os.WriteFile(cfg.File, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Load(cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (h *harness) waitAutoscale(what string, fn func(AutoscaleStatus, api.Status) error) {
	h.t.Helper()
	ctx := testenv.Context(h.t, 30*time.Second)
	var a AutoscaleStatus
	var st api.Status
	err := testenv.WaitFor(ctx, func() error {
		a, st = h.c.Autoscale(), h.c.Status()
		return fn(a, st)
	})
	if err != nil {
		h.t.Fatalf("waiting for %s: %v\nautoscale: %+v\nstatus: %+v", what, err, a, st)
	}
}

// TestAutoscaleOutAndIn holds requests in flight on the only instance
// through the real pool and checks the loop: scale-out to the policy's
// count with all new instances launched at once, the decision in the
// status and events, then scale-in to min once the requests end.
func TestAutoscaleOutAndIn(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, writeAutoscaleApp(t, dir))
	h.waitFor("1 in service", inService(1))

	targets := h.pool.Targets()
	if len(targets) != 1 {
		t.Fatalf("pool has %d targets", len(targets))
	}
	for range 3 {
		targets[0].Begin()
	}
	h.waitAutoscale("scale-out", func(a AutoscaleStatus, st api.Status) error {
		if st.Desired < 3 || st.InService < 3 {
			return fmt.Errorf("desired %d, %d in service; want at least 3", st.Desired, st.InService)
		}
		return nil
	})
	a := h.c.Autoscale()
	if !a.Enabled || a.LastChange == nil || !strings.Contains(a.LastChange.Reason, "in-flight/instance") {
		t.Errorf("autoscale = %+v, last change %+v", a, a.LastChange)
	}
	if len(a.Policies) != 1 || a.Policies[0].Name != "busy" || a.Policies[0].Target != 1 {
		t.Errorf("policies = %+v", a.Policies)
	}
	for range 3 {
		targets[0].End(pool.Outcome{Status: 200})
	}
	h.waitAutoscale("scale-in to 1", func(a AutoscaleStatus, st api.Status) error {
		if st.Desired != 1 || len(st.Instances) != 1 {
			return fmt.Errorf("desired %d, %d instances", st.Desired, len(st.Instances))
		}
		return nil
	})
	// The instance kept is not the oldest: scale-in retires the oldest.
	if st := h.c.Status(); st.Instances[0].Addr == targets[0].Addr() {
		t.Errorf("scale-in kept the oldest instance %s", st.Instances[0].ID)
	}
	// Events are stored asynchronously: wait for both changes.
	err := testenv.WaitFor(testenv.Context(t, 30*time.Second), func() error {
		evs, err := h.c.Events(0, 1000)
		if err != nil {
			return err
		}
		var out, in bool
		for _, e := range evs {
			if e.Type == "autoscale" {
				out = out || strings.Contains(e.Reason, "desired 1 -> ")
				in = in || strings.Contains(e.Reason, "-> 1")
			}
		}
		if !out || !in {
			return fmt.Errorf("autoscale events lack the changes (out %v, in %v): %+v", out, in, evs)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestAutoscalePauseSurvivesRestart pauses auto scaling, checks that
// in-flight load no longer scales out, and that the paused state is kept
// across a restart of the controller.
func TestAutoscalePauseSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := writeAutoscaleApp(t, dir)
	h := start(t, dir, cfg)
	h.waitFor("1 in service", inService(1))
	if err := h.c.PauseAutoscale(true); err != nil {
		t.Fatal(err)
	}
	targets := h.pool.Targets()
	for range 3 {
		targets[0].Begin()
	}
	h.waitAutoscale("a paused evaluation that would scale out", func(a AutoscaleStatus, st api.Status) error {
		if a.State != "paused" || !strings.Contains(a.Held, "would scale out") {
			return fmt.Errorf("state %s, held %q", a.State, a.Held)
		}
		if st.Desired != 1 {
			return fmt.Errorf("desired %d while paused", st.Desired)
		}
		return nil
	})
	for range 3 {
		targets[0].End(pool.Outcome{Status: 200})
	}
	h.stop()

	h = start(t, dir, cfg)
	h.waitFor("1 in service", inService(1))
	if a := h.c.Autoscale(); !a.Paused {
		t.Errorf("after restart: paused %v, want true", a.Paused)
	}
	if err := h.c.PauseAutoscale(false); err != nil {
		t.Fatal(err)
	}
	if a := h.c.Autoscale(); a.Paused {
		t.Error("resume did not resume")
	}
}
