package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrNotHolder is returned by [Lock.Release] when the group's lock is not
// held by the given holder.
var ErrNotHolder = errors.New("deploy lock not held by this holder")

// Holder is who holds a group's deploy lock.
type Holder struct {
	// ID identifies the holding deploy (the controller's rollout id); only
	// the same ID releases the lock.
	ID string `json:"id"`
	// Release is the release being deployed, for the message others see.
	Release int `json:"release"`
	// By is who started it ("alice@laptop", "ci"), for the message.
	By string `json:"by,omitempty"`
}

// LockedError is returned when a group's deploy lock is held by someone
// else. Its message says who, since when, and what to do.
type LockedError struct {
	Group  string
	Holder Holder
	Since  time.Time     // when Holder acquired the lock
	Age    time.Duration // how long it had held it when this error was made
}

// Error reads, for example: a deploy of web of v4 started by alice@laptop
// 2m0s ago is in progress; wait for it or run shoal deploy --abort.
func (e *LockedError) Error() string {
	by := ""
	if e.Holder.By != "" {
		by = " started by " + e.Holder.By
	}
	group := ""
	if e.Group != "" {
		group = " of " + e.Group
	}
	return fmt.Sprintf("a deploy%s of v%d%s %s ago is in progress; wait for it or run shoal deploy --abort",
		group, e.Holder.Release, by, e.Age.Round(time.Second))
}

// Lock is the deploy lock of every group: at most one rollout per group at
// a time. It is in memory; the controller persists the active rollout (its
// [Snapshot]) in its store, and on restart re-acquires the lock for it
// before resuming, so that a crash does not free the group to a second
// deploy. The zero Lock is ready to use; it is safe for concurrent use.
type Lock struct {
	// Now returns the current time; nil means time.Now. Set before first
	// use.
	Now func() time.Time

	mu   sync.Mutex
	held map[string]*holding
}

type holding struct {
	h     Holder
	since time.Time
	freed chan struct{} // closed on release
}

func (l *Lock) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// TryAcquire takes group's lock for h, or returns a *[LockedError] naming
// the current holder. Acquiring a lock h already holds (same ID) is an
// error too: a deploy runs once. It does not block.
func (l *Lock) TryAcquire(group string, h Holder) error {
	_, err := l.try(group, h)
	return err
}

// try acquires or returns the current holding's release channel.
func (l *Lock) try(group string, h Holder) (<-chan struct{}, error) {
	if h.ID == "" {
		return nil, errors.New("deploy lock: empty holder id")
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := l.held[group]; cur != nil {
		return cur.freed, &LockedError{Group: group, Holder: cur.h, Since: cur.since, Age: now.Sub(cur.since)}
	}
	if l.held == nil {
		l.held = map[string]*holding{}
	}
	l.held[group] = &holding{h: h, since: now, freed: make(chan struct{})}
	return nil, nil
}

// Acquire takes group's lock for h, waiting while another holder has it,
// until ctx ends. On ctx's end it returns the last *[LockedError] joined
// with the context's cause, so the caller can print who held the lock.
func (l *Lock) Acquire(ctx context.Context, group string, h Holder) error {
	for {
		freed, err := l.try(group, h)
		var locked *LockedError
		if !errors.As(err, &locked) {
			return err
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return errors.Join(err, context.Cause(ctx))
		}
	}
}

// Release frees group's lock if holderID holds it, waking waiters;
// otherwise it returns [ErrNotHolder] and changes nothing.
func (l *Lock) Release(group, holderID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.held[group]
	if cur == nil || cur.h.ID != holderID {
		return ErrNotHolder
	}
	delete(l.held, group)
	close(cur.freed)
	return nil
}

// Holder returns group's current holder and since when, if any.
func (l *Lock) Holder(group string) (h Holder, since time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := l.held[group]; cur != nil {
		return cur.h, cur.since, true
	}
	return Holder{}, time.Time{}, false
}
