// Package timeseries owns the dashboard's short-term memory: fixed-memory
// rings of per-second points (requests, errors, p50/p95/p99 latency) for the
// last hour, per group and per route; per-second gauges (an instance's CPU
// and memory); and a keeper of the slowest recent requests with their time
// split into queue, time to first byte and transfer.
//
// Memory is fixed when a series is created: nothing grows with traffic.
// Percentiles come from a log-linear Histogram with fixed buckets, which
// merges by adding counts: a series keeps one per 10 seconds, so the
// quantiles of any step or window are merged from them, never averaged.
//
// Everything here is safe for concurrent use unless a type's doc says
// otherwise. The hot path (Store.Record, Slow.Offer) does not allocate once
// a series exists.
package timeseries

import (
	"math/bits"
	"time"
)

// Histogram layout: values are microseconds. Values below subBuckets are
// counted exactly; above, each power of two is split into subBuckets linear
// buckets, so a bucket is at most 1/subBuckets of its lower bound wide
// (relative error of a reported quantile <= 6.25% with the midpoint).
const (
	subBits    = 3
	subBuckets = 1 << subBits
	// maxExp is the highest power of two with its own buckets; larger values
	// (above about 4 minutes) land in the last bucket.
	maxExp = 27
	// NumBuckets is the fixed number of buckets of a Histogram.
	NumBuckets = subBuckets + (maxExp-subBits+1)*subBuckets
)

// Histogram counts durations in fixed log-linear buckets from 1µs to about
// four minutes (longer ones share the last bucket; Max stays exact). The zero value is an empty histogram ready to use.
// A Histogram is not safe for concurrent use; its owner locks.
type Histogram struct {
	counts [NumBuckets]uint32
	total  uint64
	max    uint64 // largest observed value, µs
}

// bucketOf returns the bucket index of a value in microseconds.
func bucketOf(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	e := bits.Len64(us) - 1 // >= subBits
	if e > maxExp {
		return NumBuckets - 1
	}
	m := (us >> (e - subBits)) & (subBuckets - 1)
	return subBuckets + (e-subBits)*subBuckets + int(m)
}

// bucketBounds returns the lower (inclusive) and upper (exclusive) bound of
// bucket i in microseconds.
func bucketBounds(i int) (lo, hi uint64) {
	if i < subBuckets {
		return uint64(i), uint64(i) + 1
	}
	e := (i-subBuckets)/subBuckets + subBits
	m := uint64((i - subBuckets) % subBuckets)
	lo = (subBuckets + m) << (e - subBits)
	hi = (subBuckets + m + 1) << (e - subBits)
	return lo, hi
}

func toMicros(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / time.Microsecond)
}

// Observe counts one duration. Negative durations count as zero.
func (h *Histogram) Observe(d time.Duration) {
	us := toMicros(d)
	h.counts[bucketOf(us)]++
	h.total++
	if us > h.max {
		h.max = us
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	if o.max > h.max {
		h.max = o.max
	}
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count returns the number of observed durations.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest observed duration (exact, not bucketed).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) * time.Microsecond }

// Quantile returns the q-quantile (0 <= q <= 1) as the midpoint of the
// bucket that holds it, never more than Max. An empty histogram returns 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	switch {
	case q < 0:
		q = 0
	case q > 1:
		q = 1
	}
	// rank is the 1-based position of the wanted value.
	rank := uint64(q*float64(h.total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			lo, hi := bucketBounds(i)
			mid := lo + (hi-lo)/2
			if mid > h.max {
				mid = h.max
			}
			return time.Duration(mid) * time.Microsecond
		}
	}
	return h.Max()
}
