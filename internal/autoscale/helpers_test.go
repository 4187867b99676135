package autoscale

import (
	"fmt"
	"testing"
	"time"
)

// t0 is an arbitrary fixed start for tests that do not use synctest.
var t0 = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

// bounds are the latency histogram bounds used by the tests, in seconds.
var bounds = []float64{0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1, 2.5}

// fake is one instance of a simulated group: its rates per second and its
// cumulative counters.
type fake struct {
	id        string
	inService time.Time
	rps       float64  // requests completed per second
	cpu       float64  // cores busy
	inflight  int      // gauge
	perSecond []uint64 // histogram increments per second; nil: no latency data
	noCPU     bool     // report no CPU

	req  float64
	cpuS float64
	hist []uint64
}

// group is a simulated group that produces Samples.
type group struct{ insts []*fake }

// advance accrues dt of each instance's rates into its counters.
func (g *group) advance(dt time.Duration) {
	for _, f := range g.insts {
		f.req += f.rps * dt.Seconds()
		f.cpuS += f.cpu * dt.Seconds()
		if f.perSecond != nil {
			if f.hist == nil {
				f.hist = make([]uint64, len(f.perSecond))
			}
			for i, c := range f.perSecond {
				f.hist[i] += uint64(float64(c) * dt.Seconds())
			}
		}
	}
}

// sample returns the group's Sample at now; the slices are copies.
func (g *group) sample(now time.Time) Sample {
	s := Sample{Time: now}
	for _, f := range g.insts {
		in := InstanceSample{
			ID: f.id, InService: f.inService, Requests: uint64(f.req),
			InFlight: f.inflight, CPUSeconds: f.cpuS, HasCPU: !f.noCPU,
		}
		if f.hist != nil {
			in.Latency = Histogram{Bounds: bounds, Counts: append([]uint64(nil), f.hist...)}
		}
		s.Instances = append(s.Instances, in)
	}
	return s
}

// run feeds w one sample per second for d, ending at the returned time.
func (g *group) run(t *testing.T, w *Window, from time.Time, d time.Duration) time.Time {
	t.Helper()
	now := from
	for range int(d / time.Second) {
		now = now.Add(time.Second)
		g.advance(time.Second)
		if err := w.Add(g.sample(now)); err != nil {
			t.Fatal(err)
		}
	}
	return now
}

// warmGroup returns n instances in service for an hour before t0, each
// serving rps requests per second.
func warmGroup(n int, rps float64) *group {
	g := &group{}
	for i := range n {
		g.insts = append(g.insts, &fake{id: fmt.Sprintf("i%d", i), inService: t0.Add(-time.Hour), rps: rps})
	}
	return g
}

// each sets f on every instance.
func (g *group) each(f func(*fake)) {
	for _, in := range g.insts {
		f(in)
	}
}

// rpsConfig is a default Config with one rps policy at target 50 and the
// given bounds.
func rpsConfig(lo, hi int) Config {
	c := oneSecondConfig()
	c.Min, c.Max = lo, hi
	c.Policies = []Policy{{Metric: RPSPerInstance, Target: 50}}
	return c
}

func mustScaler(t *testing.T, c Config) *Scaler {
	t.Helper()
	s, err := NewScaler(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ptr(n int) *int { return &n }

// oneSecondConfig is DefaultConfig evaluated once a second with a 2s recent
// look: the tests feed one sample per second of fake time, so they pin the
// cadence their expectations were written for rather than follow the
// default (500ms with a 1s recent look, which keeps "the lowest of two
// samples" the same).
func oneSecondConfig() Config {
	c := DefaultConfig()
	c.Interval, c.OutWindow = time.Second, 2*time.Second
	return c
}
