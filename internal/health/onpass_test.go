package health

import (
	"testing"
	"time"
)

// TestOnPass: every passing probe is announced with its start time, not
// only transitions; failing probes are not.
func TestOnPass(t *testing.T) {
	b := newBackend(t, 200)
	type pass struct {
		addr    string
		started time.Time
	}
	passes := make(chan pass, 100)
	reports := make(chan Result, 10)
	before := time.Now()
	c := New(fastSpec(), func(r Result) { reports <- r }, WithOnPass(func(addr string, started time.Time) {
		select {
		case passes <- pass{addr, started}:
		default:
		}
	}))
	if err := c.Add(b.addr(), TargetOpts{InitiallyHealthy: true}); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	var last time.Time
	for range 3 { // healthy from the start: no report, but each pass counts
		select {
		case p := <-passes:
			if p.addr != b.addr() || p.started.Before(before) || p.started.Before(last) {
				t.Fatalf("pass %+v (previous start %v)", p, last)
			}
			last = p.started
		case <-time.After(wait):
			t.Fatal("no pass announced")
		}
	}
	noReport(t, reports)
	b.status.Store(500)
	if r := next(t, reports); r.Healthy {
		t.Fatalf("report %+v, want unhealthy", r)
	}
	for len(passes) > 0 {
		<-passes
	}
	waitChecks(t, c, b.addr(), 3)
	if len(passes) != 0 {
		t.Fatal("a failing probe was announced as a pass")
	}
}
