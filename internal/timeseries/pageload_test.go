package timeseries

import (
	"fmt"
	"testing"
	"time"
)

// TestPageLoadReport: hits, misses and bytes per route; the saved time is
// hits x the median target time of stored answers plus the bytes saved
// over the measured client throughput; small answers do not count in the
// throughput; routes past the bound count under OtherRoute.
func TestPageLoadReport(t *testing.T) {
	p := NewPageLoad(t0)
	rec := func(route, cache string, body, sent int64, target, client time.Duration) {
		p.Record(PageLoadSample{Group: "web", Route: route, Cache: cache, BodyBytes: body, SentBytes: sent, TargetTime: target, ClientTime: client})
	}
	// Three stored fetches of 100, 300 and 200 ms: median 200 ms.
	rec("/", "stored", 1<<20, 1<<20, 100*time.Millisecond, 250*time.Millisecond)
	rec("/", "stored", 1<<20, 1<<20, 300*time.Millisecond, 250*time.Millisecond)
	rec("/", "stored", 1<<20, 1<<20, 200*time.Millisecond, 250*time.Millisecond)
	// A dynamic miss: counted, not in the median.
	rec("/", "miss", 1000, 1000, 5*time.Second, 0)
	// Five compressed hits: 1 MiB each, 256 KiB sent in 250 ms.
	for range 5 {
		rec("/", "hit", 1<<20, 256<<10, 0, 250*time.Millisecond)
	}
	// A small answer: no throughput sample.
	rec("/", "hit", 100, 100, 0, time.Hour)
	// Not looked up and bodyless: not counted.
	rec("/", "", 0, 0, time.Second, time.Second)

	rows := p.Report()
	if len(rows) != 1 {
		t.Fatalf("rows %+v", rows)
	}
	r := rows[0]
	if r.Hits != 6 || r.Misses != 4 || r.HitRatio() != 0.6 {
		t.Errorf("hits %d misses %d ratio %v", r.Hits, r.Misses, r.HitRatio())
	}
	wantBody := int64(3<<20 + 1000 + 5<<20 + 100)
	wantSent := int64(3<<20 + 1000 + 5*256<<10 + 100)
	if r.BodyBytes != wantBody || r.SentBytes != wantSent {
		t.Errorf("bytes %d -> %d, want %d -> %d", r.BodyBytes, r.SentBytes, wantBody, wantSent)
	}
	if r.TargetMedian != 200*time.Millisecond {
		t.Errorf("median %v", r.TargetMedian)
	}
	// 3 MiB + 1.25 MiB in 2 s.
	wantThru := float64(3<<20+5*256<<10) / 2
	if r.Throughput != wantThru {
		t.Errorf("throughput %v, want %v", r.Throughput, wantThru)
	}
	if r.SavedByCache != 6*200*time.Millisecond {
		t.Errorf("saved by cache %v", r.SavedByCache)
	}
	wantComp := time.Duration(float64(wantBody-wantSent) / wantThru * float64(time.Second))
	if r.SavedByCompression != wantComp || r.Saved != r.SavedByCache+wantComp {
		t.Errorf("saved by compression %v (want %v), saved %v", r.SavedByCompression, wantComp, r.Saved)
	}

	// The route bound.
	q := NewPageLoad(t0)
	for i := range pageLoadMaxRoutes + 10 {
		q.Record(PageLoadSample{Group: "g", Route: fmt.Sprintf("/r%d", i), Cache: "miss"})
	}
	rows = q.Report()
	var other int64
	for _, r := range rows {
		if r.Key.Route == OtherRoute {
			other = r.Misses
		}
	}
	if len(rows) != pageLoadMaxRoutes+1 || other != 10 {
		t.Errorf("%d rows, %d under %s; want %d and 10", len(rows), other, OtherRoute, pageLoadMaxRoutes+1)
	}
}
