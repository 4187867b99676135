package autoscale

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// simGroup is a group driven by the Scaler's decisions: launched instances
// enter service after boot, the balancer spreads the load evenly over the
// instances in service, and a scale-in stops the instances ChooseScaleIn
// picks.
type simGroup struct {
	boot  time.Duration
	next  int
	insts []*simInst
}

type simInst struct {
	id       string
	started  time.Time
	requests float64
}

func (g *simGroup) inService(now time.Time, in *simInst) bool {
	return !now.Before(in.started.Add(g.boot))
}

// resize launches or stops instances to reach n at now.
func (g *simGroup) resize(now time.Time, n int) {
	for len(g.insts) < n {
		g.next++
		g.insts = append(g.insts, &simInst{id: fmt.Sprintf("i%03d", g.next), started: now})
	}
	if len(g.insts) > n {
		var all []Instance
		for _, in := range g.insts {
			all = append(all, Instance{ID: in.id, Release: 1, Started: in.started})
		}
		stop := map[string]bool{}
		for _, id := range ChooseScaleIn(all, len(g.insts)-n, 1) {
			stop[id] = true
		}
		kept := g.insts[:0]
		for _, in := range g.insts {
			if !stop[in.id] {
				kept = append(kept, in)
			}
		}
		g.insts = kept
	}
}

// serve spreads rps over one second and returns the Sample at now.
func (g *simGroup) serve(now time.Time, rps float64) Sample {
	var up []*simInst
	for _, in := range g.insts {
		if g.inService(now, in) {
			up = append(up, in)
		}
	}
	s := Sample{Time: now}
	for _, in := range up {
		in.requests += rps / float64(len(up))
		s.Instances = append(s.Instances, InstanceSample{ID: in.id, InService: in.started.Add(g.boot), Requests: uint64(in.requests)})
	}
	return s
}

// TestLoadStepFakeTime drives Decide every second of fake time through a
// load step up and back down.
func TestLoadStepFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := mustScaler(t, rpsConfig(2, 20))
		w := NewWindow(s.Config().Window)
		g := &simGroup{boot: 5 * time.Second}
		start := time.Now()
		g.resize(start.Add(-time.Hour), 2)
		desired := 2

		rps := 100.0
		var stepUp, reached, stepDown, firstIn, atMin time.Time
		peak := 0
		for i := range 20 * 60 {
			time.Sleep(time.Second)
			now := time.Now()
			switch i {
			case 60:
				rps, stepUp = 400, now // needs 8 at 50 rps/instance
			case 5 * 60:
				rps, stepDown = 90, now // needs 2 again (45 rps/instance)
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
			switch {
			case !stepUp.IsZero() && stepDown.IsZero() && reached.IsZero() && desired >= 8:
				reached = now
			case !stepDown.IsZero() && firstIn.IsZero() && desired < 8:
				firstIn = now
			case !firstIn.IsZero() && atMin.IsZero() && desired == 2:
				atMin = now
			}
			if stepUp.IsZero() && desired != 2 {
				t.Fatalf("+%s: desired %d before any load change (%s)", now.Sub(start), desired, d.Reason)
			}
		}
		if reached.IsZero() || reached.Sub(stepUp) > 30*time.Second {
			t.Fatalf("8 instances reached %s after the load step, want within 30s", reached.Sub(stepUp))
		}
		if peak != 8 {
			t.Fatalf("peak desired %d, want exactly 8 (no overshoot)", peak)
		}
		// The last high recommendation can come up to one window before the
		// drop is complete, so the stabilization may end that much earlier.
		if firstIn.Sub(stepDown) < 5*time.Minute-DefaultConfig().Window || firstIn.Sub(stepDown) > 5*time.Minute+15*time.Second {
			t.Fatalf("first scale-in %s after the load drop, want just after the 5m stabilization", firstIn.Sub(stepDown))
		}
		// One instance per 30s cooldown: 8 -> 2 in six steps.
		if got := atMin.Sub(firstIn); atMin.IsZero() || got != 5*30*time.Second {
			t.Fatalf("8 -> 2 took %s after the first scale-in, want 2m30s", got)
		}
		if desired != 2 {
			t.Fatalf("ended at %d, want min 2", desired)
		}
	})
}
