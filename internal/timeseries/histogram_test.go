package timeseries

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketBoundsContainValue(t *testing.T) {
	vals := []uint64{0, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 12345, 1 << 20, 1<<31 + 5, 1<<32 - 1}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		vals = append(vals, r.Uint64N(1<<32))
	}
	for _, v := range vals {
		i := bucketOf(v)
		if i < 0 || i >= NumBuckets {
			t.Fatalf("bucketOf(%d) = %d out of range", v, i)
		}
		lo, hi := bucketBounds(i)
		if v >= 1<<(maxExp+1) {
			if i != NumBuckets-1 {
				t.Fatalf("value %d above the range in bucket %d, want the last", v, i)
			}
			continue
		}
		if v < lo || v >= hi {
			t.Fatalf("value %d in bucket %d with bounds [%d,%d)", v, i, lo, hi)
		}
		if lo >= subBuckets && float64(hi-lo)/float64(lo) > 1.0/subBuckets+1e-9 {
			t.Fatalf("bucket %d [%d,%d) wider than 1/%d of its lower bound", i, lo, hi, subBuckets)
		}
	}
	// Buckets tile the range without gaps.
	for i := 1; i < NumBuckets; i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if lo != prevHi {
			t.Fatalf("gap between bucket %d and %d: %d != %d", i-1, i, prevHi, lo)
		}
	}
}

func TestQuantileAccuracy(t *testing.T) {
	var h Histogram
	// 1ms .. 1000ms uniformly, one each.
	for ms := 1; ms <= 1000; ms++ {
		h.Observe(time.Duration(ms) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.95, 950 * time.Millisecond}, {0.99, 990 * time.Millisecond}} {
		got := h.Quantile(c.q)
		rel := float64(got-c.want) / float64(c.want)
		if rel < -0.0625 || rel > 0.0625 {
			t.Errorf("Quantile(%v) = %v, want %v within 6.25%%", c.q, got, c.want)
		}
	}
	if got := h.Quantile(1); got != time.Second {
		t.Errorf("Quantile(1) = %v, want the exact max 1s", got)
	}
	if h.Count() != 1000 {
		t.Errorf("Count = %d", h.Count())
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 {
		t.Error("empty histogram quantile is not 0")
	}
}

func TestMergeEqualsObservingBoth(t *testing.T) {
	var a, b, both Histogram
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		d := time.Duration(r.ExpFloat64() * float64(50*time.Millisecond))
		if i%2 == 0 {
			a.Observe(d)
		} else {
			b.Observe(d)
		}
		both.Observe(d)
	}
	a.Merge(&b)
	if a != both {
		t.Fatal("merged histogram differs from one that observed every value")
	}
}

func FuzzHistogramQuantile(f *testing.F) {
	f.Add(int64(1500), int64(3), 0.5)
	f.Add(int64(0), int64(1<<40), 0.99)
	f.Add(int64(-5), int64(7), 1.5)
	f.Fuzz(func(t *testing.T, a, b int64, q float64) {
		var h Histogram
		h.Observe(time.Duration(a))
		h.Observe(time.Duration(b))
		got := h.Quantile(q)
		if got < 0 || got > h.Max() {
			t.Fatalf("Quantile(%v) = %v outside [0, max %v]", q, got, h.Max())
		}
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(time.Duration(i%100000) * time.Microsecond)
	}
}
