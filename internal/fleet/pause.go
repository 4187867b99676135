package fleet

import (
	"context"
	"time"
)

// The fleet's own pauses. A server starved of CPU (a loaded machine, a
// long garbage collection, thousands of runnable goroutines after a
// failover) runs its goroutines late: a heartbeat's answer is read late,
// its deadline fires late, and a host would be declared lost for the
// server's silence, not its own; the replacements that follow load the
// server more, and more hosts go the same way (a 1,000-host failover in
// bench/scale declared 707 live hosts lost so). As Cassandra's failure
// detector does not convict peers for time its own process was paused,
// the fleet measures how late its own goroutines run (watchPauses) and
// does not count that time in a host's LostAfter.

// pausedLocked returns how long, in total, the fleet's goroutines have
// been paused while Run runs: each gap between two of its calls beyond
// HeartbeatEvery, the gap up to now included. watchPauses calls it every
// HeartbeatEvery/4, so a gap beyond HeartbeatEvery means no goroutine of
// the fleet ran meanwhile, whatever the hosts did.
func (f *Fleet) pausedLocked() time.Duration {
	now := f.o.Now()
	if !f.watchedAt.IsZero() {
		if gap := now.Sub(f.watchedAt) - f.o.HeartbeatEvery; gap > 0 {
			f.paused += gap
		}
	}
	f.watchedAt = now
	return f.paused
}

// watchPauses calls pausedLocked every HeartbeatEvery/4 until ctx ends.
func (f *Fleet) watchPauses(ctx context.Context) {
	t := time.NewTicker(f.o.HeartbeatEvery / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		f.pausedLocked()
		f.mu.Unlock()
	}
}
