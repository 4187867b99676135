package autoscale

import (
	"math"
	"testing"
	"time"
)

// FuzzDecideSequence drives one Scaler through a sequence of decisions
// the way the controller does (the group follows each decision), with
// the load, the limits and manual counts changing between them, and
// holds every decision to the bounds of that moment: desired within
// [Min, Max] and, from a count within them, within the step limits.
// FuzzDecide checks one decision of a fresh Scaler; the stabilization
// memory and the cooldowns only matter over several.
func FuzzDecideSequence(f *testing.F) {
	f.Add(1, 10, uint8(5), 50.0, []byte{0, 1, 2, 0, 1, 3, 0, 1, 4, 5, 0, 1})
	f.Add(0, 3, uint8(0), 20.0, []byte{6, 0, 1, 0, 1, 7, 0, 1, 8, 0, 1})
	f.Add(2, 100, uint8(30), 1.0, []byte{1, 1, 1, 0, 0, 0, 1, 9, 1, 10, 1, 11, 1})
	f.Fuzz(func(t *testing.T, lo, hi int, stab uint8, target float64, ops []byte) {
		c := oneSecondConfig()
		c.Min, c.Max, c.Stabilization = lo, hi, time.Duration(stab)*time.Second
		c.CooldownOut, c.CooldownIn = 3*time.Second, 5*time.Second
		c.Warmup = 0
		c.Policies = []Policy{
			{Metric: RPSPerInstance, Target: target},
			{Kind: StepScaling, Metric: CPU, Steps: []Step{
				{Lower: math.Inf(-1), Upper: 0.2, Adjust: -1},
				{Lower: 0.8, Upper: math.Inf(1), Adjust: 50, Percent: true},
			}},
		}
		s, err := NewScaler(c)
		if err != nil {
			return
		}
		if len(ops) > 200 {
			ops = ops[:200]
		}
		g := warmGroup(max(lo, 1), 0)
		w := NewWindow(c.Window)
		now := g.run(t, w, t0, 3*time.Second)
		current := max(lo, 1)
		resize := func(n int) {
			for len(g.insts) < n {
				g.insts = append(g.insts, &fake{id: string(rune('a'+len(g.insts)%26)) + string(rune('0'+len(g.insts)/26%10)), inService: now})
			}
			g.insts = g.insts[:min(n, len(g.insts))]
		}
		for i, op := range ops {
			arg := int(op >> 4)
			switch op & 0xf {
			case 0: // one second of load: arg sets rps and cpu per instance
				g.each(func(in *fake) { in.rps, in.cpu = float64(arg*arg)*target/16, float64(arg)/10 })
				now = g.run(t, w, now, time.Second)
			case 1, 2, 3: // a decision, followed by the group (capped so the test stays small)
				lo, hi := s.Limits()
				d := s.Decide(now, current, w)
				if d.Desired < lo || d.Desired > hi {
					t.Fatalf("op %d: desired %d outside [%d, %d] from %d: %q", i, d.Desired, lo, hi, current, d.Reason)
				}
				if current >= lo && current <= hi {
					up := max(current+c.MaxStepUp, int(math.Ceil(float64(current)*c.MaxFactorUp)))
					if d.Desired > up || d.Desired < current-c.MaxStepDown {
						t.Fatalf("op %d: step %d -> %d beyond the step bounds", i, current, d.Desired)
					}
				}
				current = d.Desired
				resize(min(current, 300))
			case 4: // new limits around the current ones
				lo, hi := s.Limits()
				s.SetLimits(max(lo+arg-8, 0), max(hi+arg-8, 1))
			case 5: // shoal scale N
				n := s.SetDesired(now, arg*3)
				if lo, hi := s.Limits(); n < lo || n > hi {
					t.Fatalf("op %d: SetDesired(%d) = %d outside [%d, %d]", i, arg*3, n, lo, hi)
				}
				current = n
				resize(min(current, 300))
			case 6:
				s.Pause()
			case 7:
				s.Resume()
			case 8: // a scheduled action
				mn, mx := arg/2, arg+1
				n, err := s.ApplyAction(now, Action{Name: "fuzz", Min: &mn, Max: &mx}, current)
				if err == nil {
					if n < mn || n > mx {
						t.Fatalf("op %d: ApplyAction = %d outside [%d, %d]", i, n, mn, mx)
					}
					current = n
					resize(min(current, 300))
				}
			default: // time passes without samples
				now = now.Add(time.Duration(arg) * time.Second)
			}
		}
	})
}
