package autoscale

import (
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestWindowRecent(t *testing.T) {
	g := warmGroup(2, 10)
	w := NewWindow(10 * time.Second)
	now := g.run(t, w, t0, 11*time.Second)
	r := w.Recent(RPSPerInstance, now, 2*time.Second, 15*time.Second)
	if !r.OK || !near(r.Total, 20) || !near(r.Value, 10) || r.InService != 2 {
		t.Fatalf("steady: %+v, want 20 rps in total", r)
	}

	// One busy second is not sustained: the lowest interval wins.
	g.each(func(f *fake) { f.rps = 100 })
	now = g.run(t, w, now, time.Second)
	if r := w.Recent(RPSPerInstance, now, 2*time.Second, 15*time.Second); !near(r.Total, 20) {
		t.Fatalf("one busy second: total %g, want 20", r.Total)
	}
	now = g.run(t, w, now, time.Second)
	if r := w.Recent(RPSPerInstance, now, 2*time.Second, 15*time.Second); !near(r.Total, 200) {
		t.Fatalf("two busy seconds: total %g, want 200", r.Total)
	}

	// A new instance counts at once, warm or not, its counter whole in
	// the interval it entered service: the total stays the demand.
	g.each(func(f *fake) { f.rps = 60 })
	n := &fake{id: "new", inService: now.Add(500 * time.Millisecond), rps: 80, inflight: 7}
	g.insts = append(g.insts, n)
	now = g.run(t, w, now, 2*time.Second)
	r = w.Recent(RPSPerInstance, now, 2*time.Second, 15*time.Second)
	if !near(r.Total, 200) || r.InService != 3 || r.Warm != 2 {
		t.Fatalf("with a new instance: %+v, want 200 in total on 3 in service, 2 warm", r)
	}
	g.each(func(f *fake) {
		if f.id != "new" {
			f.inflight = 2
		}
	})
	now = g.run(t, w, now, time.Second)
	if r := w.Recent(InFlightPerInstance, now, 2*time.Second, 15*time.Second); !r.OK || !near(r.Total, 7) {
		t.Fatalf("in flight: %+v, want the lowest sample's total 7", r)
	}
	// CPU stays over warmed-up instances only.
	g.each(func(f *fake) { f.cpu = 0.5 })
	n.cpu = 4
	now = g.run(t, w, now, 2*time.Second)
	if r := w.Recent(CPU, now, 2*time.Second, 15*time.Second); !r.OK || !near(r.Value, 0.5) || r.Total != 0 {
		t.Fatalf("cpu: %+v, want 0.5 over the warm ones", r)
	}

	if r := NewWindow(time.Second).Recent(RPSPerInstance, now, time.Second, 0); r.OK {
		t.Fatalf("empty window: %+v", r)
	}
}

func TestDecideCooldownEndsInService(t *testing.T) {
	for _, c := range []struct {
		name     string
		policy   Policy
		inSvc    int // instances in service after the first step
		want     int // desired one second later
		heldPart string
	}{
		{"step in service", Policy{Metric: RPSPerInstance, Target: 50}, 5, 10, ""},
		{"step still booting", Policy{Metric: RPSPerInstance, Target: 50}, 3, 5, "3 of 5 in service"},
		{"step policy waits the cooldown", Policy{Kind: StepScaling, Metric: RPSPerInstance, Steps: []Step{{Lower: 100, Upper: math.Inf(1), Adjust: 4}}}, 5, 5, "step policy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustScaler(t, rpsConfig(1, 100))
			s.cfg.Policies = []Policy{c.policy}
			g := warmGroup(1, 1000) // wants 20 at target 50
			w := NewWindow(10 * time.Second)
			now := g.run(t, w, t0, 11*time.Second)
			if d := s.Decide(now, 1, w); d.Desired != 5 {
				t.Fatalf("first step: %d %q %q", d.Desired, d.Reason, d.Held)
			}
			for i := 1; i < c.inSvc; i++ {
				g.insts = append(g.insts, &fake{id: "n" + string(rune('0'+i)), inService: now.Add(500 * time.Millisecond)})
			}
			now = g.run(t, w, now, time.Second)
			d := s.Decide(now, 5, w)
			if d.Desired != c.want || !strings.Contains(d.Held, c.heldPart) {
				t.Fatalf("one second later: %d %q %q", d.Desired, d.Reason, d.Held)
			}
			if c.heldPart != "" && !strings.HasPrefix(d.Held, "cooldown after scale-out: 9s left") {
				t.Fatalf("held %q, want the cooldown", d.Held)
			}
		})
	}
}

// TestLoadStepOneDecision is the benchmark's scenario in fake time: one
// instance at target 20 rps, a step to 80 rps that starts within a
// sampling interval, instances that serve one second after launch. The
// count the load needs (4) comes within two decisions of the step being
// fully visible, never more, and one busy second before it changes
// nothing.
func TestLoadStepOneDecision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := oneSecondConfig()
		cfg.Min, cfg.Max = 1, 4
		cfg.Warmup, cfg.CooldownIn, cfg.Stabilization = 5*time.Second, 5*time.Second, 30*time.Second
		cfg.Policies = []Policy{{Metric: RPSPerInstance, Target: 20}}
		s := mustScaler(t, cfg)
		w := NewWindow(cfg.Window)
		g := &simGroup{boot: time.Second}
		start := time.Now()
		g.resize(start.Add(-time.Hour), 1)
		desired, peak := 1, 1
		var stepAt, fullAt time.Time
		for i := range 150 {
			time.Sleep(time.Second)
			now := time.Now()
			rps := 10.0
			switch {
			case i == 20:
				rps = 60 // one busy second: not a step
			case i == 40:
				rps, stepAt = 10+70*0.3, now // the step starts 0.7 s into the interval
			case i > 40 && i < 80:
				rps = 80
			}
			if err := w.Add(g.serve(now, rps)); err != nil {
				t.Fatal(err)
			}
			d := s.Decide(now, desired, w)
			if d.Desired != desired {
				t.Logf("+%s %s", now.Sub(start), d.Reason)
			}
			desired = d.Desired
			g.resize(now, desired)
			peak = max(peak, desired)
			if stepAt.IsZero() && desired != 1 {
				t.Fatalf("+%s: desired %d before the step (%s)", now.Sub(start), desired, d.Reason)
			}
			if fullAt.IsZero() && desired == 4 {
				fullAt = now
			}
		}
		// The first full second of load is stepAt+1s; the second
		// decision after it is stepAt+3s at the latest.
		if fullAt.IsZero() || fullAt.Sub(stepAt) > 3*time.Second {
			t.Fatalf("desired 4 reached %s after the step, want within 3s", fullAt.Sub(stepAt))
		}
		if peak != 4 {
			t.Fatalf("peak %d, want 4", peak)
		}
		if desired != 1 {
			t.Fatalf("ended at %d, want back at 1 after the load stopped", desired)
		}
	})
}
