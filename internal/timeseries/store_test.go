package timeseries

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1_699_999_980, 0) // a whole minute

func TestRangeCountsAndQuantiles(t *testing.T) {
	s := NewStore(Options{})
	// Second 0: 100 requests of 10ms, 2 of them 503. Second 2: 10 of 200ms.
	for i := range 100 {
		status := 200
		if i < 2 {
			status = 503
		}
		s.Record(t0.Add(time.Duration(i)*time.Millisecond), "web", "GET /", status, 10*time.Millisecond)
	}
	for range 10 {
		s.Record(t0.Add(2*time.Second), "web", "GET /api", 200, 200*time.Millisecond)
	}
	pts := s.Range(Key{Group: "web"}, t0, t0.Add(3*time.Second), time.Second)
	if len(pts) != 3 {
		t.Fatalf("got %d points, want 3", len(pts))
	}
	if pts[0].Requests != 100 || pts[0].Errors != 2 || pts[0].RPS != 100 || pts[0].P50 < 9*time.Millisecond || pts[0].P50 > 11*time.Millisecond {
		t.Errorf("second 0 = %+v", pts[0])
	}
	if got := pts[0].ErrorRate(); got != 0.02 {
		t.Errorf("error rate %v, want 0.02", got)
	}
	if pts[1].Requests != 0 || pts[1].P99 != 0 {
		t.Errorf("empty second = %+v", pts[1])
	}
	// Quantiles are those of the 10-second period: 110 requests, the 10
	// slowest of 200ms, so p95 is slow and p50 is not.
	if pts[2].Requests != 10 || pts[2].P50 > 11*time.Millisecond || pts[2].P95 < 190*time.Millisecond || pts[2].P95 > 210*time.Millisecond {
		t.Errorf("second 2 = %+v", pts[2])
	}
	// A 3-second step sums counts.
	agg := s.Range(Key{Group: "web"}, t0, t0.Add(3*time.Second), 3*time.Second)
	if len(agg) != 1 || agg[0].Requests != 110 || agg[0].P99 != pts[2].P99 {
		t.Errorf("aggregated = %+v", agg)
	}
	if agg[0].RPS != 110.0/3 {
		t.Errorf("aggregated RPS = %v", agg[0].RPS)
	}
	route := s.Range(Key{Group: "web", Route: "GET /api"}, t0, t0.Add(3*time.Second), time.Second)
	if route[0].Requests != 0 || route[2].Requests != 10 {
		t.Errorf("route series = %+v", route)
	}
	if got := s.Range(Key{Group: "nope"}, t0, t0.Add(2*time.Second), time.Second); len(got) != 2 || got[0].Requests != 0 {
		t.Errorf("unknown key = %+v", got)
	}
}

func TestRangeForgetsAfterAnHour(t *testing.T) {
	s := NewStore(Options{})
	s.Record(t0, "web", "", 200, time.Millisecond)
	later := t0.Add(Window + 5*time.Second)
	s.Record(later, "web", "", 200, time.Millisecond)
	pts := s.Range(Key{Group: "web"}, later.Add(-Window), later.Add(time.Second), time.Second)
	total := 0
	for _, p := range pts {
		total += p.Requests
	}
	if total != 1 {
		t.Fatalf("got %d requests in the last hour, want 1 (the old one is outside)", total)
	}
	// Asking for more than the window is capped.
	if n := len(s.Range(Key{Group: "web"}, t0.Add(-2*Window), t0, time.Second)); n != int(ringSeconds) {
		t.Fatalf("got %d points for a 2h range, want %d", n, ringSeconds)
	}
}

func TestQuantilesMergeAcrossPeriods(t *testing.T) {
	s := NewStore(Options{})
	// 1000 fast requests spread over 100 s, and one 7 s request in one
	// second: that second's p99 is 7 s, but over the 100 s the p99 is fast.
	for i := range 1000 {
		s.Record(t0.Add(time.Duration(i)*100*time.Millisecond), "web", "", 200, 20*time.Millisecond)
	}
	s.Record(t0.Add(50*time.Second), "web", "", 200, 7*time.Second)
	pts := s.Range(Key{Group: "web"}, t0, t0.Add(100*time.Second), 100*time.Second)
	if len(pts) != 1 || pts[0].Requests != 1001 {
		t.Fatalf("points = %+v", pts)
	}
	if pts[0].P99 > 25*time.Millisecond {
		t.Errorf("p99 over 100s = %v, want about 20ms (one slow request in 1001 is above p99)", pts[0].P99)
	}
	sum := s.Summarize(Key{Group: "web"}, t0.Add(99*time.Second), 100*time.Second)
	if sum.Requests != 1001 || sum.Max != 7*time.Second || sum.P99 > 25*time.Millisecond {
		t.Errorf("summary = %+v", sum)
	}
}

func TestSummarizeAndRouteBound(t *testing.T) {
	s := NewStore(Options{MaxRoutes: 2})
	for i := range 3 {
		for j := range 10 {
			s.Record(t0.Add(time.Duration(i)*time.Minute+time.Duration(j)*time.Second), "web",
				fmt.Sprintf("r%d", i), 200, time.Duration(j+1)*time.Millisecond)
		}
	}
	sum := s.Summarize(Key{Group: "web"}, t0.Add(2*time.Minute+30*time.Second), 3*time.Minute)
	if sum.Requests != 30 || sum.Max != 10*time.Millisecond {
		t.Fatalf("summary = %+v", sum)
	}
	if sum.RPS != 30.0/180 {
		t.Errorf("RPS = %v", sum.RPS)
	}
	// Only the last minute.
	if one := s.Summarize(Key{Group: "web"}, t0.Add(2*time.Minute+30*time.Second), time.Minute); one.Requests != 10 {
		t.Errorf("one-minute summary = %+v", one)
	}
	keys := map[Key]bool{}
	for _, k := range s.Keys() {
		keys[k] = true
	}
	if !keys[Key{"web", "r0"}] || !keys[Key{"web", "r1"}] || keys[Key{"web", "r2"}] || !keys[Key{"web", OtherRoute}] {
		t.Fatalf("keys = %v, want r0, r1 and %s (r2 folded)", keys, OtherRoute)
	}
}

func TestGauges(t *testing.T) {
	s := NewStore(Options{MaxGauges: 2})
	s.SetGauge(t0, "a", 1)
	s.SetGauge(t0.Add(time.Second), "a", 2)
	s.SetGauge(t0.Add(time.Second), "b", 5)
	pts := s.Gauge("a", t0, t0.Add(3*time.Second), time.Second)
	if len(pts) != 3 || !pts[0].OK || pts[0].Value != 1 || pts[1].Value != 2 || pts[2].OK {
		t.Fatalf("gauge a = %+v", pts)
	}
	s.SetGauge(t0.Add(2*time.Second), "c", 9) // evicts a (oldest write is at t0+1s, tie with b broken by map order)
	n := 0
	for _, name := range []string{"a", "b", "c"} {
		if s.Gauge(name, t0, t0.Add(3*time.Second), 3*time.Second)[0].OK {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d gauges kept, want 2", n)
	}
	s.DeleteGauge("c")
	if s.Gauge("c", t0, t0.Add(3*time.Second), 3*time.Second)[0].OK {
		t.Fatal("deleted gauge still has values")
	}
}

func TestConcurrentRecordAndRead(t *testing.T) {
	s := NewStore(Options{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				s.Record(t0.Add(time.Duration(i)*time.Millisecond), "web", fmt.Sprintf("r%d", w), 200, time.Millisecond)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			s.Range(Key{Group: "web"}, t0, t0.Add(time.Second), time.Second)
			s.Summarize(Key{Group: "web"}, t0, time.Minute)
		}
	}()
	wg.Wait()
	sum := s.Summarize(Key{Group: "web"}, t0.Add(2*time.Second), time.Minute)
	if sum.Requests != 8000 {
		t.Fatalf("got %d requests, want 8000", sum.Requests)
	}
}

func BenchmarkRecord(b *testing.B) {
	s := NewStore(Options{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Record(t0.Add(time.Duration(i)*time.Microsecond), "web", "GET /api", 200, time.Duration(i%5000)*time.Microsecond)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	s := NewStore(Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			s.Record(t0.Add(time.Duration(i)*time.Microsecond), "web", "GET /api", 200, time.Millisecond)
		}
	})
}

func BenchmarkRangeHour(b *testing.B) {
	s := NewStore(Options{})
	for i := range 3600 {
		s.Record(t0.Add(time.Duration(i)*time.Second), "web", "", 200, time.Millisecond)
	}
	end := t0.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		s.Range(Key{Group: "web"}, end.Add(-time.Hour), end, 10*time.Second)
	}
}
