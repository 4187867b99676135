package pool

import (
	"log/slog"
	"time"
)

const (
	// unitsPerWeight scales weights to integers fine enough for slow start.
	unitsPerWeight = 100
	// rampSteps is the number of slow-start steps from 10% to 100%; each
	// step rebuilds the snapshot once.
	rampSteps = 10
	// maxSchedule bounds the round-robin schedule; larger weight sums are
	// scaled down proportionally (each target keeps at least one slot).
	maxSchedule = 4096
)

// entry is one candidate target in a snapshot.
type entry struct {
	t      *Target
	units  int64 // effective weight x unitsPerWeight, slow start included
	weight int   // configured weight, for rendezvous hashing
}

// snapshot is an immutable view of the pickable targets. Pick loads it
// with one atomic read; every change under p.mu stores a new one.
type snapshot struct {
	// cands are the healthy targets, or when there are none (fail open)
	// all non-draining targets.
	cands    []entry
	failOpen bool
	healthy  int
	// sched is the smooth weighted round-robin order of cands (indexes),
	// for RoundRobin only.
	sched []int32
	// wakeAt is when a time-driven change is due (unix ns; 0 = none).
	wakeAt int64
}

// units returns t's effective weight units, if t is a candidate.
func (s *snapshot) units(t *Target) (int64, bool) {
	for i := range s.cands {
		if s.cands[i].t == t {
			return s.cands[i].units, true
		}
	}
	return 0, false
}

// rebuildLocked stores a new snapshot computed from the targets at now.
func (p *Pool) rebuildLocked(now time.Time) {
	s := &snapshot{}
	wake := func(at time.Time) {
		if n := at.UnixNano(); s.wakeAt == 0 || n < s.wakeAt {
			s.wakeAt = n
		}
	}
	for _, t := range p.targets {
		switch t.state {
		case StateHealthy:
			s.healthy++
		case StateEjected:
			wake(t.ejectedUntil)
		}
	}
	for _, t := range p.targets {
		if t.state == StateDraining || (s.healthy > 0 && t.state != StateHealthy) {
			continue
		}
		u := int64(t.weight) * unitsPerWeight
		if p.slow > 0 && !t.rampStart.IsZero() && t.state == StateHealthy {
			if el := now.Sub(t.rampStart); el >= 0 && el < p.slow {
				k := int64(el * rampSteps / p.slow) // 0 .. rampSteps-1
				u = int64(t.weight) * (10 + 90*k/rampSteps)
				wake(t.rampStart.Add(p.slow * time.Duration(k+1) / rampSteps))
			} else if el >= p.slow {
				t.rampStart = time.Time{}
			}
		}
		s.cands = append(s.cands, entry{t: t, units: u, weight: t.weight})
	}
	s.failOpen = s.healthy == 0 && len(s.cands) > 0
	if p.algo == RoundRobin {
		s.sched = schedule(s.cands)
	}
	if p.least != nil {
		p.least.reset(s.cands)
	}
	if old := p.snap.Load(); old != nil && old.failOpen != s.failOpen {
		if s.failOpen {
			p.logLocked(slog.LevelWarn, "pool failing open: no healthy target, using all", "targets", len(s.cands))
		} else {
			p.logLocked(slog.LevelInfo, "pool no longer failing open", "healthy", s.healthy)
		}
	}
	p.snap.Store(s)
}

// schedule returns one cycle of nginx's smooth weighted round robin over
// c: each step adds every weight to its current value, picks the largest
// and subtracts the total from it. Heavier targets are spread out rather
// than picked in bursts.
func schedule(c []entry) []int32 {
	n := len(c)
	if n == 0 {
		return nil
	}
	w := make([]int64, n)
	var g int64
	for i := range c {
		w[i] = c[i].units
		g = gcd(g, w[i])
	}
	var sum int64
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	if sum > maxSchedule && sum > int64(n) {
		scaled := int64(0)
		for i := range w {
			w[i] = max(1, w[i]*maxSchedule/sum)
			scaled += w[i]
		}
		sum = scaled
	}
	if sum == int64(n) {
		// Every weight is 1 (the common case: no weights, no slow start):
		// the cycle below would visit the targets in order, at a cost of
		// n*n, paid at each change of the pool (a group of 500 coming into
		// service rebuilt it 500 times).
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(i)
		}
		return out
	}
	return smooth(w, sum)
}

// smooth runs one cycle of the smooth weighted round robin over the
// weights w, whose sum is sum: O(sum * len(w)).
func smooth(w []int64, sum int64) []int32 {
	cur := make([]int64, len(w))
	out := make([]int32, 0, sum)
	for range sum {
		best := 0
		for i := range w {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		out = append(out, int32(best))
	}
	return out
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
