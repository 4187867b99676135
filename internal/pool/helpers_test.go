package pool

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a fake Options.Now.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// seeded returns a deterministic Options.Rand safe for concurrent use.
func seeded(seed uint64) func(int) int {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		return r.IntN(n)
	}
}

var testSecret = []byte("0123456789abcdef-test-secret")

// newTestPool returns a pool with a fake clock and seeded randomness and
// adds the given targets ("addr" or "addr*weight" is not supported; use
// addWeighted).
func newTestPool(t *testing.T, o Options, addrs ...string) (*Pool, *clock) {
	t.Helper()
	c := newClock()
	if o.Now == nil {
		o.Now = c.Now
	}
	if o.Rand == nil {
		o.Rand = seeded(1)
	}
	if o.Name == "" {
		o.Name = "test"
	}
	p := New(o)
	for _, a := range addrs {
		mustAdd(t, p, TargetSpec{Addr: a})
	}
	return p, c
}

func mustAdd(t testing.TB, p *Pool, s TargetSpec) {
	t.Helper()
	if err := p.Add(s); err != nil {
		t.Fatalf("Add(%+v): %v", s, err)
	}
}

func mustPick(t testing.TB, p *Pool, tried ...*Target) Choice {
	t.Helper()
	ch, err := p.Pick(nil, tried)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return ch
}

func target(t testing.TB, p *Pool, addr string) *Target {
	t.Helper()
	for _, x := range p.Targets() {
		if x.Addr() == addr {
			return x
		}
	}
	t.Fatalf("no target %s", addr)
	return nil
}

func targetStatus(t testing.TB, p *Pool, addr string) TargetStatus {
	t.Helper()
	for _, ts := range p.Status().Targets {
		if ts.Addr == addr {
			return ts
		}
	}
	t.Fatalf("no target %s in status", addr)
	return TargetStatus{}
}

// counts picks n times (Begin/End around each) and counts by address.
func counts(t testing.TB, p *Pool, n int) map[string]int {
	t.Helper()
	m := map[string]int{}
	for range n {
		ch := mustPick(t, p)
		ch.Target.Begin()
		ch.Target.End(Outcome{Status: 200, TTFB: time.Millisecond})
		m[ch.Target.Addr()]++
	}
	return m
}

func addr(i int) string { return fmt.Sprintf("10.0.0.%d:80", i) }

// keyOf is the pick key of r for p; nil (no stickiness) for a nil r.
func keyOf(p *Pool, r *http.Request) *Key {
	if r == nil {
		return nil
	}
	k := p.RequestKey(r)
	return &k
}
