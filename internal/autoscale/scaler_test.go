package autoscale

import (
	"math"
	"strings"
	"testing"
	"time"
)

// windowOf returns a window filled with 11s of g's traffic, and its end.
func windowOf(t *testing.T, g *group) (*Window, time.Time) {
	t.Helper()
	w := NewWindow(10 * time.Second)
	return w, g.run(t, w, t0, 11*time.Second)
}

func TestDecideTargetTracking(t *testing.T) {
	for _, c := range []struct {
		name              string
		warm              int
		rps               float64
		current, stepDown int
		want              int
		reason, held      string
	}{
		{"double load doubles", 2, 100, 2, 1, 4, "rps/instance 100 > target 50 over 10s; desired 2 -> 4", ""},
		{"above tolerance", 2, 56, 2, 1, 3, "rps/instance 56 > target 50 over 10s; desired 2 -> 3", ""},
		{"within tolerance above", 2, 54, 2, 1, 2, "", "rps/instance 54 within 10% of target 50"},
		{"within tolerance below", 2, 46, 2, 1, 2, "", "rps/instance 46 within 10% of target 50"},
		{"in by one step", 4, 20, 4, 1, 3, "rps/instance 20 < target 50 over 10s; desired 4 -> 3 (wants 2, step limit -1)", ""},
		{"in all the way", 4, 20, 4, 10, 2, "rps/instance 20 < target 50 over 10s; desired 4 -> 2", ""},
		{"out step +4", 1, 1000, 1, 1, 5, "rps/instance 1000 > target 50 over 10s; desired 1 -> 5 (wants 20, step limit max(+4, x2))", ""},
		{"out step x2 then max", 10, 150, 10, 1, 20, "rps/instance 150 > target 50 over 10s; desired 10 -> 20 (wants 30, max 20)", ""},
		{"zero instances", 0, 0, 0, 1, 1, "below min 1; desired 0 -> 1", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := rpsConfig(1, 20)
			cfg.Stabilization, cfg.MaxStepDown = 0, c.stepDown
			s := mustScaler(t, cfg)
			w, now := windowOf(t, warmGroup(c.warm, c.rps))
			d := s.Decide(now, c.current, w)
			if d.Desired != c.want || d.Reason != c.reason || d.Held != c.held {
				t.Fatalf("Decide = desired %d reason %q held %q; want %d %q %q", d.Desired, d.Reason, d.Held, c.want, c.reason, c.held)
			}
			if c.held != "" && d.State != Steady {
				t.Fatalf("State = %s after a hold, want steady", d.State)
			}
			if wantDir := map[bool]Direction{true: Out, false: In}[c.want > c.current]; c.want != c.current && d.Direction != wantDir {
				t.Fatalf("Direction = %s, want %s", d.Direction, wantDir)
			}
		})
	}
}

func TestDecideIssueExample(t *testing.T) {
	cfg := oneSecondConfig()
	cfg.Min, cfg.Max = 1, 10
	cfg.Policies = []Policy{{Metric: LatencyP95, Target: 0.3}}
	s := mustScaler(t, cfg)
	g := warmGroup(3, 10)
	g.each(func(f *fake) { f.perSecond = []uint64{0, 0, 100, 66, 0, 10, 0, 0, 0} })
	w, now := windowOf(t, g)
	d := s.Decide(now, 3, w)
	if want := "p95 412ms > target 300ms over 10s; desired 3 -> 5"; d.Reason != want || d.Desired != 5 {
		t.Fatalf("Reason = %q (desired %d), want %q", d.Reason, d.Desired, want)
	}
	pv := d.PerPolicy[0]
	if pv.Name != "latency_p95" || math.Abs(pv.Value-0.412) > 1e-9 || pv.Target != 0.3 || pv.Wants != 5 || !pv.OK || pv.Warm != 3 {
		t.Fatalf("PerPolicy = %+v", pv)
	}
}

func TestDecideBounds(t *testing.T) {
	s := mustScaler(t, rpsConfig(2, 8))
	w, now := windowOf(t, warmGroup(8, 100))
	if d := s.Decide(now, 8, w); d.Desired != 8 || d.Held != "at max 8 (rps/instance 100 > target 50 over 10s wants 16)" {
		t.Fatalf("at max: %d %q", d.Desired, d.Held)
	}
	if err := s.SetLimits(3, 6); err != nil {
		t.Fatal(err)
	}
	if d := s.Decide(now, 8, w); d.Desired != 6 || d.Reason != "above max 6; desired 8 -> 6" || d.Direction != In {
		t.Fatalf("above max: %d %q %s", d.Desired, d.Reason, d.Direction)
	}
	if d := s.Decide(now, 1, w); d.Desired != 3 || d.Reason != "below min 3; desired 1 -> 3" {
		t.Fatalf("below min: %d %q", d.Desired, d.Reason)
	}
	if err := s.SetLimits(4, 3); err == nil {
		t.Fatal("SetLimits(4, 3) succeeded")
	}
	if lo, hi := s.Limits(); lo != 3 || hi != 6 {
		t.Fatalf("Limits = %d, %d after a rejected change", lo, hi)
	}

	cfg := rpsConfig(2, 8)
	cfg.Stabilization = 0
	s = mustScaler(t, cfg)
	w, now = windowOf(t, warmGroup(2, 1))
	if d := s.Decide(now, 2, w); d.Desired != 2 || d.Held != "at min 2" {
		t.Fatalf("at min: %d %q", d.Desired, d.Held)
	}
}

func TestDecideCooldownOut(t *testing.T) {
	s := mustScaler(t, rpsConfig(1, 100))
	g := warmGroup(1, 1000) // wants 20 while the launched instances boot
	w := NewWindow(10 * time.Second)
	now := g.run(t, w, t0, 11*time.Second)
	if d := s.Decide(now, 1, w); d.Desired != 5 || d.State != CoolingOut {
		t.Fatalf("first step: %d %s", d.Desired, d.State)
	}
	now = g.run(t, w, now, time.Second)
	d := s.Decide(now, 5, w)
	if d.Desired != 5 || !strings.HasPrefix(d.Held, "cooldown after scale-out: 9s left (rps/instance 1000") {
		t.Fatalf("within cooldown: %d %q", d.Desired, d.Held)
	}
	now = g.run(t, w, now, 9*time.Second)
	if d := s.Decide(now, 5, w); d.Desired != 10 {
		t.Fatalf("after cooldown: %d %q", d.Desired, d.Held)
	}
}

func TestDecideScaleInStabilization(t *testing.T) {
	s := mustScaler(t, rpsConfig(1, 10))
	g := warmGroup(4, 10) // wants ceil(4 * 10/50) = 1
	w := NewWindow(10 * time.Second)
	start := g.run(t, w, t0, 11*time.Second)
	now, current := start, 4
	var lastHigh time.Time // the latest recommendation not below current
	step := func(d time.Duration) Decision {
		t.Helper()
		var dec Decision
		for range int(d / time.Second) {
			now = g.run(t, w, now, time.Second)
			dec = s.Decide(now, current, w)
			if dec.PerPolicy[0].Wants >= current {
				lastHigh = now
			}
			current = dec.Desired
		}
		return dec
	}
	s.Decide(start, current, w) // the memory starts here
	if d := step(108 * time.Second); d.Held != "scale-in stabilization: 3m12s left" || d.State != Stabilizing {
		t.Fatalf("held = %q state %s", d.Held, d.State)
	}
	// A burst within tolerance restarts the wait from its last second.
	g.each(func(f *fake) { f.rps = 50 })
	step(11 * time.Second)
	g.each(func(f *fake) { f.rps = 10 })
	d := step(11 * time.Second)
	if want := "scale-in stabilization: " + round(lastHigh.Add(5*time.Minute).Sub(now)) + " left"; d.Held != want || !lastHigh.After(start.Add(119*time.Second)) {
		t.Fatalf("after a burst at %s: held %q, want %q", lastHigh.Sub(start), d.Held, want)
	}
	for range 300 {
		if d = step(time.Second); d.Desired != 4 {
			break
		}
	}
	// The highest recommendation of the window is 3, from the seconds
	// when the burst was leaving the 10s metrics window.
	want := "rps/instance 10 < target 50 over 10s for 5m0s; desired 4 -> 3"
	if d.Reason != want || d.State != CoolingIn || !now.Equal(lastHigh.Add(5*time.Minute)) {
		t.Fatalf("scale-in at +%s (last high +%s): %q state %s, want %q", now.Sub(start), lastHigh.Sub(start), d.Reason, d.State, want)
	}
	if d := step(10 * time.Second); d.Held != "cooldown after scale-in: 20s left" || d.Desired != 3 {
		t.Fatalf("cooldown: %q", d.Held)
	}
	want = "rps/instance 10 < target 50 over 10s for 5m0s; desired 3 -> 2 (wants 1, step limit -1)"
	if d := step(20 * time.Second); d.Desired != 2 || d.Reason != want {
		t.Fatalf("second scale-in: %d %q %q, want %q", d.Desired, d.Reason, d.Held, want)
	}
	if d := step(31 * time.Second); d.Desired != 1 {
		t.Fatalf("third scale-in: %d %q", d.Desired, d.Held)
	}
}

func TestDecideSeveralPolicies(t *testing.T) {
	cfg := rpsConfig(1, 20)
	cfg.Stabilization, cfg.MaxStepDown = 0, 10
	cfg.Policies = append(cfg.Policies, Policy{Name: "cpu60", Metric: CPU, Target: 0.6})
	for _, c := range []struct {
		name      string
		rps, cpu  float64
		noCPU     bool
		want      int
		contains  string
		rpsWants  int
		cpuWants  int
		direction Direction
	}{
		{"out if any", 100, 0.1, false, 8, "rps/instance 100 > target 50 over 10s; desired 4 -> 8", 8, 1, Out},
		{"largest out wins", 100, 1.8, false, 8, "rps/instance 100 > target 50, cpu 180% > target 60% over 10s; desired 4 -> 8 (wants 12, step limit max(+4, x2))", 8, 12, Out},
		{"in only if all", 10, 0.6, false, 4, "cpu60: cpu 60% within 10% of target 60%", 1, 4, Hold},
		{"missing data blocks in", 10, 0, true, 4, "cpu60: no data: no CPU data", 1, 4, Hold},
		{"in to the smallest reduction", 10, 0.3, false, 2, "rps/instance 10 < target 50, cpu 30% < target 60% over 10s; desired 4 -> 2", 1, 2, In},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustScaler(t, cfg)
			g := warmGroup(4, c.rps)
			g.each(func(f *fake) { f.cpu, f.noCPU = c.cpu, c.noCPU })
			w, now := windowOf(t, g)
			d := s.Decide(now, 4, w)
			text := d.Reason + d.Held
			if d.Desired != c.want || text != c.contains || d.Direction != c.direction {
				t.Fatalf("Decide = %d %s %q; want %d %s %q", d.Desired, d.Direction, text, c.want, c.direction, c.contains)
			}
			if d.PerPolicy[0].Wants != c.rpsWants || d.PerPolicy[1].Wants != c.cpuWants || d.PerPolicy[1].Name != "cpu60" {
				t.Fatalf("PerPolicy = %+v", d.PerPolicy)
			}
		})
	}
}

func TestDecideWarmingInstances(t *testing.T) {
	cfg := rpsConfig(1, 20)
	cfg.Stabilization = 0
	// Two warm instances at twice the target, two launched for them just
	// in service, warming, and not yet given a share of the load: no
	// further scale-out (no overshoot).
	//
	// This case used to give the warming instances 300 rps each and
	// expect a hold, because only warmed-up instances counted. Since the
	// recent look (Config.OutWindow) measures rps as the group's total at
	// the balancer, 2*100 + 2*300 = 800 rps is demand for 16 instances and
	// does scale out (see "busy warming instances" below); what must not
	// scale out is the load of two instances counted again when it moves
	// to the new ones, which is the next case.
	g := warmGroup(2, 100)
	g.insts = append(g.insts,
		&fake{id: "n1", inService: t0.Add(5 * time.Second)},
		&fake{id: "n2", inService: t0.Add(5 * time.Second)})
	w, now := windowOf(t, g)
	d := mustScaler(t, cfg).Decide(now, 4, w)
	if d.Desired != 4 || d.PerPolicy[0].Warm != 2 || d.PerPolicy[0].Value != 100 || d.PerPolicy[0].Recent {
		t.Fatalf("warming: %d %q %+v", d.Desired, d.Reason, d.PerPolicy[0])
	}
	// The balancer has spread the same 200 rps over all four: still 4.
	g.each(func(f *fake) { f.rps = 50 })
	w, now = windowOf(t, g)
	if d := mustScaler(t, cfg).Decide(now, 4, w); d.Desired != 4 {
		t.Fatalf("spread: %d %q %q", d.Desired, d.Reason, d.Held)
	}
	// Busy warming instances: rps is demand wherever it is served.
	g.insts[2].rps, g.insts[3].rps = 300, 300
	g.insts[0].rps, g.insts[1].rps = 100, 100
	w, now = windowOf(t, g)
	want := "rps/instance 200 > target 50 in each of the last 2s (800 in total on 4 in service); desired 4 -> 8 (wants 16, step limit max(+4, x2))"
	if d := mustScaler(t, cfg).Decide(now, 4, w); d.Desired != 8 || d.Reason != want {
		t.Fatalf("busy warming: %d %q %q", d.Desired, d.Reason, d.Held)
	}
	// CPU is not additive (a cold start burns CPU): busy warming
	// instances do not count, and the warm ones at twice the target are
	// covered by the two warming.
	cpuCfg := cfg
	cpuCfg.Policies = []Policy{{Metric: CPU, Target: 0.5}}
	g.insts[0].cpu, g.insts[1].cpu = 1, 1
	g.insts[2].cpu, g.insts[3].cpu = 4, 4
	w, now = windowOf(t, g)
	if d := mustScaler(t, cpuCfg).Decide(now, 4, w); d.Desired != 4 {
		t.Fatalf("cpu with busy warming: %d %q %q", d.Desired, d.Reason, d.Held)
	}
	g.each(func(f *fake) { f.rps, f.cpu = 100, 0 })
	// Low load on the warm ones: warming instances count as at target, so
	// only one goes (ceil(2 * 0.2 + 2) = 3).
	g.each(func(f *fake) { f.rps = 10 })
	w, now = windowOf(t, g)
	if d := mustScaler(t, cfg).Decide(now, 4, w); d.Desired != 3 {
		t.Fatalf("scale-in with warming: %d %q %q", d.Desired, d.Reason, d.Held)
	}
	// Pending launches (not in service at all) count the same way.
	w, now = windowOf(t, warmGroup(2, 100))
	if d := mustScaler(t, cfg).Decide(now, 5, w); d.Desired != 5 || d.Held != "rps/instance 100 > target 50 (covered by 3 not warmed up)" {
		t.Fatalf("pending: %d %q", d.Desired, d.Held)
	}
}

func TestDecideStepScaling(t *testing.T) {
	cfg := oneSecondConfig()
	cfg.Min, cfg.Max, cfg.Stabilization = 1, 20, 0
	cfg.Policies = []Policy{{Name: "cpu steps", Kind: StepScaling, Metric: CPU, Steps: []Step{
		{Lower: math.Inf(-1), Upper: 0.2, Adjust: -1},
		{Lower: 0.7, Upper: 0.9, Adjust: 1},
		{Lower: 0.9, Upper: math.Inf(1), Adjust: 50, Percent: true},
	}}}
	for _, c := range []struct {
		cpu           float64
		current, want int
		text          string
	}{
		{0.95, 4, 6, "cpu 95% in step [90%, +Inf): +50% over 10s; desired 4 -> 6"},
		{0.95, 1, 2, "cpu 95% in step [90%, +Inf): +50% over 10s; desired 1 -> 2"},
		{0.8, 4, 5, "cpu 80% in step [70%, 90%): +1 over 10s; desired 4 -> 5"},
		{0.5, 4, 4, "cpu steps: cpu 50% in no step"},
		{0.1, 4, 3, "cpu 10% in step [-Inf, 20%): -1 over 10s; desired 4 -> 3"},
	} {
		g := warmGroup(c.current, 0)
		g.each(func(f *fake) { f.cpu = c.cpu })
		w, now := windowOf(t, g)
		d := mustScaler(t, cfg).Decide(now, c.current, w)
		if d.Desired != c.want || d.Reason+d.Held != c.text || d.PerPolicy[0].Target != 0 {
			t.Errorf("cpu %g from %d: %d %q, want %d %q", c.cpu, c.current, d.Desired, d.Reason+d.Held, c.want, c.text)
		}
	}
}

func TestPauseResumeSetDesired(t *testing.T) {
	s := mustScaler(t, rpsConfig(1, 10))
	w, now := windowOf(t, warmGroup(2, 100))
	s.Pause()
	d := s.Decide(now, 2, w)
	if d.Desired != 2 || d.State != Paused || d.Held != "paused (would scale out: rps/instance 100 > target 50)" || d.PerPolicy[0].Value != 100 {
		t.Fatalf("paused: %+v", d)
	}
	s.Resume()
	if d := s.Decide(now, 2, w); d.Desired != 4 || s.Paused() {
		t.Fatalf("resumed: %d %q", d.Desired, d.Held)
	}
	// A manual count is clamped and restarts the stabilization memory.
	if got := s.SetDesired(now, 50); got != 10 {
		t.Fatalf("SetDesired(50) = %d, want 10", got)
	}
	w, now = windowOf(t, warmGroup(2, 5))
	if d := s.Decide(now, 10, w); d.Desired != 10 || d.Held != "scale-in stabilization: 5m0s left" {
		t.Fatalf("after manual: %d %q", d.Desired, d.Held)
	}
}

func TestApplyAction(t *testing.T) {
	s := mustScaler(t, rpsConfig(1, 10))
	got, err := s.ApplyAction(t0, Action{Name: "morning", Min: ptr(4), Max: ptr(12)}, 2)
	if err != nil || got != 4 {
		t.Fatalf("ApplyAction(min 4) = %d, %v", got, err)
	}
	if lo, hi := s.Limits(); lo != 4 || hi != 12 {
		t.Fatalf("Limits = %d, %d", lo, hi)
	}
	if got, _ := s.ApplyAction(t0, Action{Desired: ptr(20)}, 5); got != 12 {
		t.Fatalf("ApplyAction(desired 20) = %d, want 12", got)
	}
	if _, err := s.ApplyAction(t0, Action{Name: "bad", Min: ptr(20)}, 5); err == nil || !strings.Contains(err.Error(), `apply schedule "bad"`) {
		t.Fatalf("ApplyAction(min above max) error = %v", err)
	}
	if lo, hi := s.Limits(); lo != 4 || hi != 12 {
		t.Fatalf("Limits changed by a rejected action: %d, %d", lo, hi)
	}
}

func TestDecideIdleScalesToMin(t *testing.T) {
	cfg := rpsConfig(1, 10)
	cfg.Stabilization, cfg.MaxStepDown = 0, 10
	cfg.Policies = append(cfg.Policies, Policy{Metric: LatencyP99, Target: 0.5})
	g := warmGroup(3, 0)
	g.each(func(f *fake) { f.perSecond = make([]uint64, len(bounds)+1) })
	w, now := windowOf(t, g)
	if d := mustScaler(t, cfg).Decide(now, 3, w); d.Desired != 1 {
		t.Fatalf("idle: %d %q %+v", d.Desired, d.Held, d.PerPolicy)
	}
	// No samples at all is not idle: hold.
	if d := mustScaler(t, cfg).Decide(now, 3, NewWindow(10*time.Second)); d.Desired != 3 ||
		d.Held != "rps_per_instance: no data: no samples in the last 10s, latency_p99: no data: no samples in the last 10s" {
		t.Fatalf("no data: %d %q", d.Desired, d.Held)
	}
	if d := mustScaler(t, DefaultConfig()).Decide(now, 1, w); d.Held != "no policies" {
		t.Fatalf("no policies: %q", d.Held)
	}
}
