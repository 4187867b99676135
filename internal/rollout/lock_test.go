package rollout

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLock(t *testing.T) {
	now := t0
	l := &Lock{Now: func() time.Time { return now }}
	alice := Holder{ID: "r1", Release: 4, By: "alice@laptop"}
	if err := l.TryAcquire("web", alice); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	err := l.TryAcquire("web", Holder{ID: "r2", Release: 5, By: "ci"})
	var locked *LockedError
	if !errors.As(err, &locked) || locked.Holder != alice || !locked.Since.Equal(t0) {
		t.Fatalf("second acquire = %v", err)
	}
	const msg = "a deploy of web of v4 started by alice@laptop 2m0s ago is in progress; wait for it or run shoal deploy --abort"
	if err.Error() != msg {
		t.Errorf("message %q, want %q", err, msg)
	}
	if err := l.TryAcquire("api", Holder{ID: "r3", Release: 1}); err != nil {
		t.Errorf("another group: %v", err)
	}
	if err := l.Release("web", "r2"); !errors.Is(err, ErrNotHolder) {
		t.Errorf("release by a non-holder: %v", err)
	}
	if h, since, ok := l.Holder("web"); !ok || h != alice || !since.Equal(t0) {
		t.Errorf("holder %v %v %v", h, since, ok)
	}
	if err := l.Release("web", "r1"); err != nil {
		t.Fatal(err)
	}
	if err := l.TryAcquire("web", Holder{ID: "r2", Release: 5}); err != nil {
		t.Errorf("after release: %v", err)
	}
	if err := l.TryAcquire("x", Holder{}); err == nil {
		t.Errorf("empty holder id accepted")
	}
}

func TestLockAcquireWaits(t *testing.T) {
	var l Lock
	if err := l.TryAcquire("web", Holder{ID: "first", Release: 1}); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- l.Acquire(context.Background(), "web", Holder{ID: "second", Release: 2}) }()
	// The waiter cannot have the lock before it is released.
	select {
	case err := <-got:
		t.Fatalf("acquired while held: %v", err)
	default:
	}
	if err := l.Release("web", "first"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if h, _, _ := l.Holder("web"); h.ID != "second" {
		t.Errorf("holder %q", h.ID)
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("deploy cancelled")
	go func() { got <- l.Acquire(ctx, "web", Holder{ID: "third", Release: 3}) }()
	cancel(cause)
	err := <-got
	var locked *LockedError
	if !errors.Is(err, cause) || !errors.As(err, &locked) || locked.Holder.ID != "second" {
		t.Errorf("cancelled acquire = %v", err)
	}
}
