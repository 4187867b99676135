package pool

import (
	"sync"
	"sync/atomic"
)

// leastIndex keeps a LeastRequests pool's candidates in a binary min-heap
// ordered by load (in-flight requests per unit of effective weight), so a
// pick costs O(1) plus O(log n) to rotate, and Begin and End cost O(log n)
// to move the target, whatever the pool's size (HAProxy's leastconn keeps
// its servers in a tree ordered the same way).
//
// Equal loads are ordered by a sequence number given to a target each time
// it is picked or its load changes, so tied targets take turns (round robin
// among equals) rather than one of them taking every pick.
//
// The heap holds exactly the candidates of the pool's latest snapshot: the
// pool rebuilds it under p.mu (then mu) whenever it stores a snapshot.
// Target.Begin and Target.End update it under mu only; Pick reads it under
// mu only. The Target fields lpos, lunits, lkey and lseq are guarded by mu.
type leastIndex struct {
	mu   sync.Mutex
	heap []*Target
	seq  uint64
	// size is len(heap), stored by reset before it reads any in-flight count:
	// with one candidate or none there is no order to keep, so update skips
	// the lock (reset keys every target afresh when the heap grows).
	size atomic.Int32
}

// loadShift scales a load to an integer key: key = in<<loadShift / units.
// Units are at most MaxWeight*unitsPerWeight (25,600 < 2^15), so two
// different ratios in1/u1 != in2/u2 differ by more than 2^-30 and their
// keys by more than 4: the key orders targets exactly as the ratios do,
// with equal keys for equal ratios only.
const loadShift = 32

// maxKeyedInFlight caps the in-flight count a key represents so that
// in<<loadShift cannot overflow; no target is ever near it.
const maxKeyedInFlight = 1<<(63-loadShift) - 1

// loadKey returns the heap key of in requests in flight over units.
func loadKey(in, units int64) uint64 {
	if in <= 0 {
		return 0
	}
	in = min(in, maxKeyedInFlight)
	return uint64(in) << loadShift / uint64(max(units, 1))
}

// lessLoad orders heap entries: lower load first, then the one that has
// waited longest at its load.
func lessLoad(a, b *Target) bool {
	return a.lkey < b.lkey || (a.lkey == b.lkey && a.lseq < b.lseq)
}

// reset makes the heap hold exactly cands, with their units. Targets that
// leave it are marked out (lpos -1) so their Begin and End skip it.
func (x *leastIndex) reset(cands []entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, t := range x.heap {
		t.lpos = -1
	}
	x.size.Store(int32(len(cands)))
	x.heap = x.heap[:0]
	for i := range cands {
		t := cands[i].t
		t.lunits = cands[i].units
		t.lkey = loadKey(t.inflight.Load(), t.lunits)
		t.lpos = int32(len(x.heap))
		x.heap = append(x.heap, t)
	}
	for i := len(x.heap)/2 - 1; i >= 0; i-- {
		x.down(i)
	}
	// Drop references to targets no longer in the pool.
	clear(x.heap[len(x.heap):cap(x.heap)])
}

// update re-keys t after its in-flight count changed.
func (x *leastIndex) update(t *Target) {
	if x.size.Load() <= 1 {
		return
	}
	x.mu.Lock()
	if t.lpos >= 0 {
		if k := loadKey(t.inflight.Load(), t.lunits); k != t.lkey {
			up := k < t.lkey
			t.lkey = k
			x.seq++
			t.lseq = x.seq
			if up {
				x.up(int(t.lpos))
			} else {
				x.down(int(t.lpos))
			}
		}
	}
	x.mu.Unlock()
}

// pick returns the least-loaded target not in tried and moves it behind
// the targets of equal load; nil when every target in the heap was tried
// (or the heap is empty).
func (x *leastIndex) pick(tried []*Target) *Target {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.heap) == 0 {
		return nil
	}
	t := x.heap[0]
	if len(tried) > 0 {
		t = x.minUntried(0, tried, nil)
		if t == nil {
			return nil
		}
	}
	x.seq++
	t.lseq = x.seq
	x.down(int(t.lpos))
	return t
}

// minUntried returns the least of best and the untried entries in the
// subtree at i. Below an untried entry nothing is less than it, so the
// walk descends only through tried entries: it visits at most
// 2*len(tried)+1 entries.
func (x *leastIndex) minUntried(i int, tried []*Target, best *Target) *Target {
	if i >= len(x.heap) {
		return best
	}
	t := x.heap[i]
	if !contains(tried, t) {
		if best == nil || lessLoad(t, best) {
			return t
		}
		return best
	}
	best = x.minUntried(2*i+1, tried, best)
	return x.minUntried(2*i+2, tried, best)
}

func (x *leastIndex) swap(i, j int) {
	h := x.heap
	h[i], h[j] = h[j], h[i]
	h[i].lpos = int32(i)
	h[j].lpos = int32(j)
}

func (x *leastIndex) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !lessLoad(x.heap[i], x.heap[parent]) {
			return
		}
		x.swap(i, parent)
		i = parent
	}
}

func (x *leastIndex) down(i int) {
	n := len(x.heap)
	for {
		least := i
		if l := 2*i + 1; l < n && lessLoad(x.heap[l], x.heap[least]) {
			least = l
		}
		if r := 2*i + 2; r < n && lessLoad(x.heap[r], x.heap[least]) {
			least = r
		}
		if least == i {
			return
		}
		x.swap(i, least)
		i = least
	}
}
