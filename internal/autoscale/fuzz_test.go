package autoscale

import (
	"math"
	"testing"
	"time"
)

func FuzzParseCron(f *testing.F) {
	for _, s := range [][2]string{
		{"0 8 * * mon-fri", "Europe/Paris"},
		{"30 2 * * *", "America/New_York"},
		{"CRON_TZ=Asia/Tokyo 0 9 * * *", ""},
		{"TZ=UTC", ""},
		{"TZ=x", ""},
		{"@every 1h", ""},
		{"@weekly", "UTC"},
		{"*/7 1-5/2 1,15 jan-mar *", ""},
		{"0 0 30 2 *", ""},
		{"CRON_TZ= 0 * * * *", ""},
	} {
		f.Add(s[0], s[1], int64(1767225600))
	}
	f.Fuzz(func(t *testing.T, spec, tz string, from int64) {
		c, err := ParseCron(spec, tz)
		if err != nil {
			return
		}
		start := time.Unix(from%(1<<34), 0)
		end := start.Add(48 * time.Hour)
		times := c.Times(start, end, 50)
		if len(times) > 50 {
			t.Fatalf("%d times, limit 50", len(times))
		}
		for i, tm := range times {
			if !tm.After(start) || tm.After(end) {
				t.Fatalf("time %s outside (%s, %s]", tm, start, end)
			}
			if i > 0 && !tm.After(times[i-1]) {
				t.Fatalf("times not strictly ascending: %v", times)
			}
		}
	})
}

// FuzzDecide checks that any valid policy configuration decides within
// [Min, Max] and within the step bounds, and explains itself.
func FuzzDecide(f *testing.F) {
	f.Add(1, 10, 0.1, 50.0, 0.7, 0.9, 2, false, 120.0, 0.95, 3, 3)
	f.Add(0, 1, 0.0, 1e-9, math.Inf(-1), 0.2, -50, true, 0.0, 0.0, 0, 0)
	f.Add(2, 100000, 0.99, 1e300, -1.0, 1e308, 1000, true, 1e308, 1e308, 100000, 50)
	// Found by the fuzzer (issue 11): a step policy that wants far more
	// than max, one step short of it (60 -> the step bound 120 > max 109).
	// A scale-out that is not capped at max fails here without fuzzing.
	f.Add(0, 109, 0.0, 53.00000000099999, math.Inf(-1), 0.0008333333333333333, 123, false, 0.0, 0.0, 60, 157)
	f.Fuzz(func(t *testing.T, lo, hi int, tol, target, lower, upper float64, adjust int, percent bool, rps, cpu float64, current, warm int) {
		c := DefaultConfig()
		c.Min, c.Max, c.Tolerance, c.Stabilization = lo, hi, tol, 0
		c.Policies = []Policy{
			{Metric: RPSPerInstance, Target: target},
			{Kind: StepScaling, Metric: CPU, Steps: []Step{{Lower: lower, Upper: upper, Adjust: adjust, Percent: percent}}},
		}
		s, err := NewScaler(c)
		if err != nil {
			if _, ok := err.(Problems); !ok {
				t.Fatalf("NewScaler error %T, want Problems", err)
			}
			return
		}
		if current < 0 || current > maxCount || warm < 0 || warm > 200 || math.IsNaN(rps) || math.IsNaN(cpu) || rps < 0 || cpu < 0 {
			return
		}
		g := warmGroup(warm, rps)
		g.each(func(in *fake) { in.cpu = cpu })
		w := NewWindow(c.Window)
		now := g.run(t, w, t0, 11*time.Second)
		d := s.Decide(now, current, w)
		if d.Desired < c.Min || d.Desired > c.Max {
			t.Fatalf("desired %d outside [%d, %d]: %q", d.Desired, c.Min, c.Max, d.Reason)
		}
		if (d.Desired == current) == (d.Held == "") || (d.Desired != current) == (d.Reason == "") {
			t.Fatalf("desired %d from %d with reason %q held %q", d.Desired, current, d.Reason, d.Held)
		}
		if current >= c.Min && current <= c.Max {
			up := max(current+c.MaxStepUp, int(math.Ceil(float64(current)*c.MaxFactorUp)))
			if d.Desired > up || d.Desired < current-c.MaxStepDown {
				t.Fatalf("step %d -> %d beyond the step bounds", current, d.Desired)
			}
		}
	})
}
