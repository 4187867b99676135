package autoscale

import (
	"errors"
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestWindowRPSPerInstance(t *testing.T) {
	g := warmGroup(2, 0)
	g.insts[0].rps, g.insts[1].rps = 30, 90
	w := NewWindow(10 * time.Second)
	now := g.run(t, w, t0, 30*time.Second)
	r := w.Value(RPSPerInstance, now, 15*time.Second)
	if !r.OK || !near(r.Value, 60) || r.Warm != 2 || r.InService != 2 {
		t.Fatalf("reading = %+v, want 60 rps/instance over 2 warm", r)
	}
	// The window keeps only what it needs: 10 samples plus the baseline.
	if w.Len() != 11 {
		t.Fatalf("Len = %d, want 11", w.Len())
	}
}

func TestWindowWarmupExclusion(t *testing.T) {
	g := warmGroup(2, 50)
	w := NewWindow(10 * time.Second)
	now := g.run(t, w, t0, 10*time.Second)
	// A new instance enters service now, busy with a cold start.
	g.insts = append(g.insts, &fake{id: "new", inService: now, rps: 500, cpu: 4, inflight: 100})
	g.each(func(f *fake) {
		if f.id != "new" {
			f.cpu, f.inflight = 0.5, 2
		}
	})
	warmup := 15 * time.Second
	now = g.run(t, w, now, 10*time.Second)
	for _, c := range []struct {
		m    Metric
		want float64
	}{{RPSPerInstance, 50}, {CPU, 0.5}, {InFlightPerInstance, 2}} {
		r := w.Value(c.m, now, warmup)
		if !r.OK || !near(r.Value, c.want) || r.Warm != 2 || r.InService != 3 {
			t.Errorf("%s while warming: %+v, want %g over 2 warm of 3", c.m, r, c.want)
		}
	}
	// After the warm-up, its traffic and its instance-seconds count.
	now = g.run(t, w, now, 16*time.Second)
	r := w.Value(RPSPerInstance, now, warmup)
	if want := (50.0 + 50 + 500) / 3; !r.OK || !near(r.Value, want) || r.Warm != 3 {
		t.Fatalf("after warm-up: %+v, want %g over 3", r, want)
	}
}

func TestWindowPartialInstanceWeighsByTime(t *testing.T) {
	// An instance that warms up halfway through the window counts for the
	// seconds it was warm: (10 s * 2 inst * 40 + 5 s * 1 * 100) / 25 inst-s.
	g := warmGroup(2, 40)
	g.insts = append(g.insts, &fake{id: "late", inService: t0.Add(-10 * time.Second), rps: 100})
	w := NewWindow(10 * time.Second)
	// Samples at t0 (the baseline) to t0+10s; late is warm from t0+5s.
	now := g.run(t, w, t0.Add(-time.Second), 11*time.Second)
	r := w.Value(RPSPerInstance, now, 15*time.Second)
	if want := (10*2*40.0 + 5*100) / 25; !r.OK || !near(r.Value, want) {
		t.Fatalf("reading = %+v, want %g", r, want)
	}
}

func TestWindowCounterReset(t *testing.T) {
	w := NewWindow(10 * time.Second)
	in := func(req uint64) []InstanceSample {
		return []InstanceSample{{ID: "a", InService: t0.Add(-time.Hour), Requests: req}}
	}
	for i, req := range []uint64{1000, 1010, 5, 15} {
		if err := w.Add(Sample{Time: t0.Add(time.Duration(i) * time.Second), Instances: in(req)}); err != nil {
			t.Fatal(err)
		}
	}
	r := w.Value(RPSPerInstance, t0.Add(3*time.Second), 0)
	if !r.OK || !near(r.Value, 25.0/3) { // 10 + 5 (reset) + 10
		t.Fatalf("reading = %+v, want 25/3", r)
	}
}

func TestWindowLatency(t *testing.T) {
	g := warmGroup(3, 10)
	// 166 of 176 requests per second at most 400ms, 10 in (400ms, 500ms]:
	// the p95 interpolates to 412ms.
	g.each(func(f *fake) { f.perSecond = []uint64{0, 0, 100, 66, 0, 10, 0, 0, 0} })
	w := NewWindow(10 * time.Second)
	now := g.run(t, w, t0, 20*time.Second)
	r := w.Value(LatencyP95, now, 0)
	if !r.OK || math.Abs(r.Value-0.412) > 1e-9 || r.Requests != 3*176*10 {
		t.Fatalf("p95 = %+v, want 0.412 over %d requests", r, 3*176*10)
	}
	if r := w.Value(LatencyP99, now, 0); !r.OK || !(r.Value > 0.45 && r.Value <= 0.5) {
		t.Fatalf("p99 = %+v, want in (0.45, 0.5]", r)
	}
	// Idle: samples but no request means 0, which is data.
	g.each(func(f *fake) { f.perSecond = []uint64{0, 0, 0, 0, 0, 0, 0, 0, 0} })
	now = g.run(t, w, now, 10*time.Second)
	if r := w.Value(LatencyP95, now, 0); !r.OK || r.Value != 0 || r.Requests != 0 {
		t.Fatalf("idle p95 = %+v, want 0 with OK", r)
	}
}

func TestWindowMissingData(t *testing.T) {
	w := NewWindow(10 * time.Second)
	if r := w.Value(RPSPerInstance, t0, 0); r.OK || r.Why != "no samples in the last 10s" {
		t.Fatalf("empty window: %+v", r)
	}
	g := warmGroup(2, 10)
	g.each(func(f *fake) { f.noCPU = true })
	now := g.run(t, w, t0, 5*time.Second)
	if r := w.Value(CPU, now, 0); r.OK || r.Why != "no CPU data" {
		t.Fatalf("cpu: %+v", r)
	}
	if r := w.Value(LatencyP95, now, 0); r.OK || r.Why != "no latency data" {
		t.Fatalf("latency: %+v", r)
	}
	if r := w.Value(RPSPerInstance, now, time.Hour+time.Minute); r.OK || r.Why != "no warmed-up instance" {
		t.Fatalf("all warming: %+v", r)
	}
	// The source stopped reporting: the data ages out.
	if r := w.Value(RPSPerInstance, now.Add(11*time.Second), 0); r.OK {
		t.Fatalf("stale window: %+v", r)
	}
	if err := w.Add(Sample{Time: now}); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("Add(same time) = %v, want ErrOutOfOrder", err)
	}
}

func TestWindowBounded(t *testing.T) {
	w := NewWindow(time.Hour)
	for i := range maxSamples + 10 {
		if err := w.Add(Sample{Time: t0.Add(time.Duration(i) * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	if w.Len() != maxSamples {
		t.Fatalf("Len = %d, want %d", w.Len(), maxSamples)
	}
}

func TestQuantile(t *testing.T) {
	b := []float64{1, 2, 4}
	for _, c := range []struct {
		counts []uint64
		q      float64
		want   float64
	}{
		{[]uint64{0, 0, 0, 0}, 0.95, 0},
		{[]uint64{10, 0, 0, 0}, 0.5, 0.5},
		{[]uint64{0, 10, 0, 0}, 0.95, 1.95},
		{[]uint64{50, 0, 50, 0}, 0.95, 3.8},
		{[]uint64{90, 0, 0, 10}, 0.95, 4}, // in the +Inf bucket: the top bound
		{[]uint64{100, 0, 0, 0}, 0.99, 0.99},
	} {
		if got := quantile(b, c.counts, c.q); !near(got, c.want) {
			t.Errorf("quantile(%v, %g) = %g, want %g", c.counts, c.q, got, c.want)
		}
	}
}
