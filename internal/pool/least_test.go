package pool

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// leastChoices is the brute-force answer: the untried candidates of the
// pool's current snapshot whose in-flight count per unit of effective
// weight is the lowest (compared by cross-multiplication, exactly).
func leastChoices(p *Pool, tried []*Target) map[*Target]bool {
	var best []*Target
	var bestIn, bestU int64
	for _, e := range p.snap.Load().cands {
		if contains(tried, e.t) {
			continue
		}
		in := e.t.inflight.Load()
		switch {
		case best == nil || in*bestU < bestIn*e.units:
			best, bestIn, bestU = []*Target{e.t}, in, e.units
		case in*bestU == bestIn*e.units:
			best = append(best, e.t)
		}
	}
	m := map[*Target]bool{}
	for _, t := range best {
		m[t] = true
	}
	return m
}

// checkLeastIndex fails unless the pool's load heap is a valid heap over
// exactly the snapshot's candidates, each keyed by its current load (when
// there are two or more). Call
// it while no Begin, End or change runs.
func checkLeastIndex(t testing.TB, p *Pool) {
	t.Helper()
	x := p.least
	x.mu.Lock()
	defer x.mu.Unlock()
	cands := p.snap.Load().cands
	if len(x.heap) != len(cands) {
		t.Fatalf("heap holds %d targets, snapshot %d", len(x.heap), len(cands))
	}
	for _, e := range cands {
		tg := e.t
		if tg.lpos < 0 || int(tg.lpos) >= len(x.heap) || x.heap[tg.lpos] != tg {
			t.Fatalf("%s: heap position %d wrong", tg.addr, tg.lpos)
		}
		if tg.lunits != e.units {
			t.Fatalf("%s: heap units %d, snapshot %d", tg.addr, tg.lunits, e.units)
		}
		// A lone candidate's key is not kept (there is nothing to order).
		if want := loadKey(tg.inflight.Load(), e.units); len(cands) > 1 && tg.lkey != want {
			t.Fatalf("%s: key %d, want %d (in flight %d)", tg.addr, tg.lkey, want, tg.inflight.Load())
		}
	}
	for i := 1; i < len(x.heap); i++ {
		if lessLoad(x.heap[i], x.heap[(i-1)/2]) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
}

// runLeastOps drives a LeastRequests pool with the operations encoded in
// ops (adds, removes, drains, health and weight changes, slow-start time,
// Begin and End) and checks every pick, with and without tried targets,
// against the brute-force scan's choice set.
func runLeastOps(t testing.TB, ops []byte) {
	c := newClock()
	p := New(Options{Name: "prop", Algorithm: LeastRequests, Now: c.Now, Rand: seeded(7), SlowStart: 10 * time.Second})
	var open []*Target // begun, not ended
	next := 0
	byte1 := func(i int) int {
		if i < len(ops) {
			return int(ops[i])
		}
		return 0
	}
	for i := 0; i < len(ops); i += 2 {
		op, arg := ops[i]%12, byte1(i+1)
		targets := p.Targets()
		pickT := func() *Target {
			if len(targets) == 0 {
				return nil
			}
			return targets[arg%len(targets)]
		}
		switch op {
		case 0: // add
			if len(targets) < 40 {
				next++
				_ = p.Add(TargetSpec{Addr: addr(next), Weight: arg%5 + 1, Unhealthy: arg%7 == 0})
			}
		case 1: // remove
			if tg := pickT(); tg != nil {
				_, _ = p.Remove(tg.addr)
			}
		case 2: // health
			if tg := pickT(); tg != nil {
				_ = p.SetHealth(tg.addr, arg%3 != 0, "")
			}
		case 3: // weight
			if tg := pickT(); tg != nil {
				_ = p.SetWeight(tg.addr, arg%256+1)
			}
		case 4: // drain
			if tg := pickT(); tg != nil {
				_, _ = p.Drain(tg.addr, time.Hour)
			}
		case 5: // undrain
			if tg := pickT(); tg != nil {
				_ = p.Undrain(tg.addr)
			}
		case 6: // time: slow-start steps
			c.Advance(time.Duration(arg) * 100 * time.Millisecond)
		case 7, 8: // end an open request
			if len(open) > 0 {
				j := arg % len(open)
				open[j].End(Outcome{Status: 200})
				open = append(open[:j], open[j+1:]...)
			}
		default: // pick and begin, some with tried targets
			var tried []*Target
			for k := 0; k < arg%4 && k < len(targets); k++ {
				tried = append(tried, targets[(arg/4+k*7)%len(targets)])
			}
			p.Status() // apply due slow-start steps before the scan
			want := leastChoices(p, tried)
			ch, err := p.Pick(nil, tried)
			if len(want) == 0 {
				if err == nil {
					t.Fatalf("op %d: picked %s, the scan finds no untried candidate", i, ch.Target.addr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("op %d: Pick: %v; the scan finds %d choices", i, err, len(want))
			}
			if !want[ch.Target] {
				t.Fatalf("op %d: picked %s (in flight %d), not among the %d least loaded", i, ch.Target.addr, ch.Target.InFlight(), len(want))
			}
			ch.Target.Begin()
			open = append(open, ch.Target)
		}
		checkLeastIndex(t, p)
	}
	for _, tg := range open {
		tg.End(Outcome{Status: 200})
	}
	checkLeastIndex(t, p)
}

func FuzzLeastRequests(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0, 3, 9, 0, 9, 1, 9, 2, 7, 0, 9, 5})
	f.Add([]byte{0, 0, 0, 4, 0, 9, 3, 200, 9, 0, 9, 0, 9, 0, 4, 1, 9, 3, 6, 30, 9, 1, 1, 0, 9, 0})
	f.Fuzz(func(t *testing.T, ops []byte) { runLeastOps(t, ops) })
}

// TestLeastRequestsMatchesScan runs the fuzz body on random operation
// sequences: each pick must be one the brute-force scan would allow.
func TestLeastRequestsMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for n := range 300 {
		ops := make([]byte, 2*(50+r.IntN(400)))
		for i := range ops {
			ops[i] = byte(r.Uint32())
		}
		// Bias towards adds early so there is something to pick.
		for i := 0; i < 20 && i < len(ops); i += 2 {
			ops[i] = 0
		}
		t.Run(fmt.Sprint(n), func(t *testing.T) { runLeastOps(t, ops) })
	}
}

// TestLeastRequestsTiesRotate: idle targets of equal weight take turns.
func TestLeastRequestsTiesRotate(t *testing.T) {
	p, _ := newTestPool(t, Options{Algorithm: LeastRequests}, "a", "b", "c")
	seen := map[string]int{}
	for range 30 {
		seen[mustPick(t, p).Target.Addr()]++ // no Begin: the pick alone rotates
	}
	for _, a := range []string{"a", "b", "c"} {
		if seen[a] != 10 {
			t.Fatalf("picks %v, want 10 each", seen)
		}
	}
}

// TestLeastRequestsConcurrent runs picks, Begin and End on many goroutines
// while targets come and go; once all is quiet the heap must match the
// pool exactly.
func TestLeastRequestsConcurrent(t *testing.T) {
	p, _ := newTestPool(t, Options{Algorithm: LeastRequests})
	for i := range 20 {
		mustAdd(t, p, TargetSpec{Addr: addr(i), Weight: i%3 + 1})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 2000 {
				ch, err := p.Pick(nil, nil)
				if err != nil {
					continue
				}
				ch.Target.Begin()
				if g%2 == 0 {
					if ch2, err := p.Pick(nil, []*Target{ch.Target}); err == nil {
						ch2.Target.Begin()
						ch2.Target.End(Outcome{Status: 200})
					}
				}
				ch.Target.End(Outcome{Status: 200})
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			a := addr(100 + i%10)
			if i%20 < 10 {
				_ = p.Add(TargetSpec{Addr: a})
			} else {
				_, _ = p.Remove(a)
			}
			_ = p.SetHealth(addr(i%20), i%3 != 0, "")
		}
	})
	wg.Wait()
	checkLeastIndex(t, p)
	for _, tg := range p.Targets() {
		if n := tg.InFlight(); n != 0 {
			t.Fatalf("%s: %d in flight after all ended", tg.addr, n)
		}
	}
}
