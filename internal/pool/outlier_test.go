package pool

import (
	"strings"
	"testing"
	"time"
)

func fail(t *Target, n int) {
	for range n {
		t.Begin()
		t.End(Outcome{Status: 502, TTFB: time.Millisecond})
	}
}

func TestEjectionBackoffAndRecovery(t *testing.T) {
	p, clk := newTestPool(t, Options{Outlier: Outlier{
		ConsecutiveFailures: 3, BaseEjection: 10 * time.Second, MaxEjection: 25 * time.Second, MaxEjectedPercent: 50,
	}}, "a", "b")
	a := target(t, p, "a")

	// Successes reset the count.
	fail(a, 2)
	a.Begin()
	a.End(Outcome{Status: 200})
	fail(a, 2)
	if a.State() != StateHealthy {
		t.Fatal("ejected without 3 consecutive failures")
	}

	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second} {
		a.Begin()
		a.End(Outcome{ConnErr: true}) // third consecutive failure
		ts := targetStatus(t, p, "a")
		if ts.State != "ejected" || ts.Ejections != int64(i+1) {
			t.Fatalf("ejection %d: %+v", i+1, ts)
		}
		if wantReason := "ejected after 3 consecutive failures for " + want.String(); ts.Reason != wantReason {
			t.Fatalf("reason %q, want %q", ts.Reason, wantReason)
		}
		for range 10 {
			if mustPick(t, p).Target == a {
				t.Fatal("picked an ejected target")
			}
		}
		clk.Advance(want - time.Second)
		if mustPick(t, p); a.State() != StateEjected {
			t.Fatal("returned before the ejection ended")
		}
		clk.Advance(time.Second)
		mustPick(t, p) // the pick applies the due return
		if ts := targetStatus(t, p, "a"); ts.State != "healthy" || ts.Reason != "ejection ended" {
			t.Fatalf("after ejection %d: %+v", i+1, ts)
		}
		fail(a, 2)
	}
	// After serving MaxEjection since its return, the backoff starts over.
	a.Begin()
	a.End(Outcome{Status: 200})
	clk.Advance(25 * time.Second)
	fail(a, 3)
	if ts := targetStatus(t, p, "a"); !strings.HasSuffix(ts.Reason, "for 10s") {
		t.Fatalf("backoff not forgiven: %q", ts.Reason)
	}
}

func TestEjectionPercentCap(t *testing.T) {
	p, _ := newTestPool(t, Options{Outlier: Outlier{ConsecutiveFailures: 2, MaxEjectedPercent: 50}}, "a", "b", "c", "d")
	for _, a := range []string{"a", "b", "c"} {
		fail(target(t, p, a), 2)
	}
	st := map[string]string{}
	for _, ts := range p.Status().Targets {
		st[ts.Addr] = ts.State
	}
	if st["a"] != "ejected" || st["b"] != "ejected" || st["c"] != "healthy" {
		t.Fatalf("states %v; want a, b ejected and c kept by the 50%% cap", st)
	}
	// The refused ejection reset c's count: one more failure is not enough.
	fail(target(t, p, "c"), 1)
	if target(t, p, "c").State() != StateHealthy {
		t.Fatal("c ejected")
	}
}

func TestEjectionDisabledAndUnhealthy(t *testing.T) {
	p, _ := newTestPool(t, Options{}, "a", "b")
	fail(target(t, p, "a"), 100)
	if target(t, p, "a").State() != StateHealthy {
		t.Fatal("ejected with outlier detection off")
	}
	q, _ := newTestPool(t, Options{Outlier: Outlier{ConsecutiveFailures: 1, MaxEjectedPercent: 100}}, "a")
	if err := q.SetHealth("a", false, ""); err != nil {
		t.Fatal(err)
	}
	fail(target(t, q, "a"), 1) // failing open; unhealthy is not ejected
	if ts := targetStatus(t, q, "a"); ts.State != "unhealthy" || ts.Ejections != 0 {
		t.Fatalf("%+v", ts)
	}
}
