package pool

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestUndrain: a drained target can be put back; one whose drain deadline
// canceled its context gets a fresh one; a removed one cannot.
func TestUndrain(t *testing.T) {
	p, _ := newTestPool(t, Options{}, "a", "b")
	a := target(t, p, "a")
	a.Begin() // keeps the drain from going idle
	idle, err := p.Drain("a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Undrain("a"); err != nil {
		t.Fatalf("Undrain: %v", err)
	}
	select {
	case <-idle:
	default:
		t.Fatal("waiters on the drain were not released")
	}
	if ts := targetStatus(t, p, "a"); ts.State != "healthy" || ts.Reason != "undrained" {
		t.Fatalf("after Undrain: %+v", ts)
	}
	picked := false
	for range 4 {
		picked = picked || mustPick(t, p).Target == a
	}
	if !picked {
		t.Fatal("undrained target never picked")
	}
	a.End(Outcome{Status: 200})

	// The deadline canceled the context: Undrain gives a new one.
	a.Begin()
	if _, err := p.Drain("a", 0); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(a.Context()), ErrDrainDeadline) {
		t.Fatal("drain deadline did not cancel the context")
	}
	if err := p.Undrain("a"); err != nil {
		t.Fatal(err)
	}
	if a.Context().Err() != nil {
		t.Fatal("undrained target kept its canceled context")
	}
	a.End(Outcome{Status: 200})

	if err := p.Undrain("a"); err != nil {
		t.Fatalf("Undrain of a serving target: %v", err)
	}
	b := target(t, p, "b")
	b.Begin()
	if _, err := p.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if err := p.Undrain("b"); !errors.Is(err, ErrRemoving) {
		t.Fatalf("Undrain of a removed target: %v, want ErrRemoving", err)
	}
	b.End(Outcome{Status: 200})
	if err := p.Undrain("zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Undrain of unknown: %v", err)
	}
}

// TestProbePassedEndsEjection: a probe that started after the ejection
// and passed ends it; an older one does not.
func TestProbePassedEndsEjection(t *testing.T) {
	p, clk := newTestPool(t, Options{Outlier: Outlier{
		ConsecutiveFailures: 1, BaseEjection: time.Minute, MaxEjection: 5 * time.Minute, MaxEjectedPercent: 50,
	}}, "a", "b")
	a := target(t, p, "a")
	before := clk.Now()
	clk.Advance(time.Second)
	fail(a, 1)
	if a.State() != StateEjected {
		t.Fatal("not ejected")
	}
	if err := p.ProbePassed("a", before); err != nil {
		t.Fatal(err)
	}
	if a.State() != StateEjected {
		t.Fatal("a probe that began before the ejection ended it")
	}
	clk.Advance(time.Second)
	p.ProbePassed("a", clk.Now())
	if ts := targetStatus(t, p, "a"); ts.State != "healthy" || ts.Reason != "ejection ended: health check passed" {
		t.Fatalf("after a passing probe: %+v", ts)
	}
	// The backoff multiplier is kept: the next ejection is longer.
	fail(a, 1)
	if ts := targetStatus(t, p, "a"); ts.Reason != "ejected after 1 consecutive failures for 2m0s" {
		t.Fatalf("second ejection: %+v", ts)
	}
	if err := p.ProbePassed("zz", clk.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}
