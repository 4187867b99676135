package controller

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestAwaitDrainHoldsTheStop: a scale-in drains the instance in the pool,
// then calls Options.AwaitDrain with its address; the instance keeps
// running (draining) until AwaitDrain returns, and is stopped then. An
// AwaitDrain that never returns is ended by its context at the drain
// timeout (1s) plus a second, and the stop goes ahead.
func TestAwaitDrainHoldsTheStop(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 3, 3)
	type call struct {
		addr    string
		pool    string // the target's state in the pool at the call
		release chan struct{}
	}
	calls := make(chan call)
	var h *harness
	h = startEdited(t, dir, cfg, pool.Options{Name: "web", DrainTimeout: time.Second}, nil, func(o *Options) {
		o.AwaitDrain = func(ctx context.Context, addr string) error {
			c := call{addr: addr, pool: poolAddrs(h.pool)[addr], release: make(chan struct{})}
			select {
			case calls <- c:
			case <-ctx.Done(): // the harness's stop drains the last instance
				return ctx.Err()
			}
			select {
			case <-c.release:
				return nil
			case <-ctx.Done():
				return fmt.Errorf("nodes behind: %w", ctx.Err())
			}
		}
	})
	h.waitFor("3 in service", inService(3))
	ctx := testenv.Context(t, 30*time.Second)

	if err := h.c.Scale(ctx, 2); err != nil {
		t.Fatal(err)
	}
	var c call
	select {
	case c = <-calls:
	case <-ctx.Done():
		t.Fatal("AwaitDrain not called at the scale-in")
	}
	if c.pool != pool.StateDraining.String() {
		t.Errorf("at AwaitDrain the target is %q in the pool, want draining", c.pool)
	}
	pid := 0
	for _, in := range h.c.Status().Instances {
		if in.Addr == c.addr {
			pid = in.PID
			if in.State != api.Draining {
				t.Errorf("instance %s is %s while AwaitDrain waits, want draining", in.ID, in.State)
			}
		}
	}
	if pid == 0 {
		t.Fatalf("no instance at %s while AwaitDrain waits", c.addr)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the instance at %s was stopped before AwaitDrain returned: %v", c.addr, err)
	}
	close(c.release)
	h.waitFor("2 in service, the drained one gone", func(st api.Status) error {
		if err := inService(2)(st); err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.Addr == c.addr {
				return errors.New("the drained instance is still listed")
			}
		}
		return nil
	})

	// AwaitDrain never returns: its context ends it.
	if err := h.c.Scale(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case c = <-calls:
	case <-ctx.Done():
		t.Fatal("AwaitDrain not called at the second scale-in")
	}
	h.waitFor("1 in service", inService(1))
}
