package lb

import (
	"math"
	"sync/atomic"
	"time"
)

// retryBudget bounds retries to a share of live requests: every request
// deposits ratio of a token, every retry takes a whole one, and the
// balance is capped (so a quiet period does not bank a retry storm).
// Besides, min retries per second are always allowed, so a lightly loaded
// balancer still retries. Lock-free; tokens are kept in thousandths.
type retryBudget struct {
	ratio  atomic.Int64 // thousandths of a token per request
	min    atomic.Int64
	tokens atomic.Int64
	sec    atomic.Int64 // current second for min
	used   atomic.Int64 // retries taken from min in sec
}

const budgetCap = 100 * 1000 // at most 100 banked retries

func newRetryBudget(ratio float64, min int) *retryBudget {
	b := &retryBudget{}
	b.set(ratio, min)
	return b
}

func (b *retryBudget) set(ratio float64, min int) {
	b.ratio.Store(int64(math.Round(ratio * 1000)))
	b.min.Store(int64(min))
}

// deposit records a live request.
func (b *retryBudget) deposit() {
	if b.tokens.Load() < budgetCap {
		b.tokens.Add(b.ratio.Load())
	}
}

// withdraw reports whether one retry may happen now, and takes it.
func (b *retryBudget) withdraw() bool {
	now := time.Now().Unix()
	if s := b.sec.Load(); s != now && b.sec.CompareAndSwap(s, now) {
		b.used.Store(0)
	}
	if b.used.Add(1) <= b.min.Load() {
		return true
	}
	for {
		t := b.tokens.Load()
		if t < 1000 {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-1000) {
			return true
		}
	}
}
