package pool

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestOnChange: every change of membership, weight or state is reported,
// after the lock is released; picks, load and no-op calls are not.
func TestOnChange(t *testing.T) {
	var n atomic.Int32
	var p *Pool
	o := Options{Outlier: Outlier{ConsecutiveFailures: 1}}
	o.OnChange = func() {
		// The lock is free: a call into the pool must not deadlock.
		p.Status()
		n.Add(1)
	}
	p, clk := newTestPool(t, o)
	step := func(what string, want bool, f func()) {
		t.Helper()
		before := n.Load()
		f()
		if got := n.Load() != before; got != want {
			t.Fatalf("%s: change reported = %v, want %v", what, got, want)
		}
	}
	step("add", true, func() { mustOK(t, p.Add(TargetSpec{Addr: "a"})) })
	step("add b", true, func() { mustOK(t, p.Add(TargetSpec{Addr: "b"})) })
	step("pick and end", false, func() {
		c := mustPick(t, p)
		c.Target.Begin()
		c.Target.End(Outcome{Status: 200})
	})
	step("same weight", false, func() { mustOK(t, p.SetWeight("a", 1)) })
	step("weight", true, func() { mustOK(t, p.SetWeight("a", 3)) })
	step("same verdict", false, func() { mustOK(t, p.SetHealth("a", true, "")) })
	step("unhealthy", true, func() { mustOK(t, p.SetHealth("a", false, "")) })
	step("healthy", true, func() { mustOK(t, p.SetHealth("a", true, "")) })
	step("ejection", true, func() {
		b := target(t, p, "b")
		b.Begin()
		b.End(Outcome{ConnErr: true})
	})
	step("ejection ends", true, func() {
		clk.Advance(time.Hour)
		p.Status()
	})
	step("drain", true, func() {
		if _, err := p.Drain("a", time.Second); err != nil {
			t.Fatal(err)
		}
	})
	step("undrain", true, func() { mustOK(t, p.Undrain("a")) })
	step("remove (idle: deleted at once)", true, func() {
		if _, err := p.Remove("a"); err != nil {
			t.Fatal(err)
		}
	})
	if len(p.Targets()) != 1 {
		t.Fatalf("targets after remove: %d", len(p.Targets()))
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
