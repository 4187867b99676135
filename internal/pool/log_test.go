package pool

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockProbe is a slog.Handler that records each message and whether the
// pool's lock was held while it was written (the test is single-threaded,
// so a failed TryLock means the logging call held it).
type lockProbe struct {
	mu     sync.Mutex
	p      *Pool
	msgs   []string
	locked []string
}

func (h *lockProbe) Enabled(context.Context, slog.Level) bool { return true }
func (h *lockProbe) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *lockProbe) WithGroup(string) slog.Handler            { return h }
func (h *lockProbe) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	if h.p != nil {
		if h.p.mu.TryLock() {
			h.p.mu.Unlock()
		} else {
			h.locked = append(h.locked, r.Message)
		}
	}
	return nil
}

// TestLogsAfterUnlock: every state change the pool logs (added, health,
// ejection and its end, refused ejection, fail open and back, drain with
// an immediate deadline, removal) is written after the pool's lock is
// released, in the order it happened.
func TestLogsAfterUnlock(t *testing.T) {
	h := &lockProbe{}
	clk := newClock()
	p := New(Options{
		Name: "t", Now: clk.Now, Rand: seeded(1), Logger: slog.New(h),
		Outlier: Outlier{ConsecutiveFailures: 1, BaseEjection: time.Second, MaxEjectedPercent: 50},
	})
	h.p = p
	mustAdd(t, p, TargetSpec{Addr: "a"})
	mustAdd(t, p, TargetSpec{Addr: "b"})
	if err := p.SetHealth("a", false, ""); err != nil {
		t.Fatal(err)
	}
	if err := p.SetHealth("b", false, ""); err != nil { // fail open
		t.Fatal(err)
	}
	if err := p.SetHealth("a", true, ""); err != nil { // healthy again
		t.Fatal(err)
	}
	if err := p.SetHealth("b", true, ""); err != nil {
		t.Fatal(err)
	}
	a := target(t, p, "a")
	a.Begin()
	a.End(Outcome{ConnErr: true}) // ejected
	b := target(t, p, "b")
	b.Begin()
	b.End(Outcome{ConnErr: true}) // refused: 50% already ejected
	clk.Advance(2 * time.Second)
	p.Status() // the ejection ends
	b.Begin()
	if _, err := p.Drain("b", 0); err != nil { // deadline at once
		t.Fatal(err)
	}
	if _, err := p.Remove("b"); err != nil {
		t.Fatal(err)
	}
	b.End(Outcome{}) // the removal completes here
	h.mu.Lock()
	defer h.mu.Unlock()
	all := strings.Join(h.msgs, "\n")
	for _, want := range []string{"target state", "pool failing open", "pool no longer failing open",
		"not ejecting target", "drain deadline reached", "target removed"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q among the logs:\n%s", want, all)
		}
	}
	if len(h.locked) > 0 {
		t.Errorf("logged under the pool lock: %q", h.locked)
	}
	if last := h.msgs[len(h.msgs)-1]; last != "target removed" {
		t.Errorf("last log %q, want target removed (order kept)", last)
	}
}
