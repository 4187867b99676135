package fleet

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// UnplacedTTL is how long a start refused for lack of capacity counts as
// waiting (Unplaced) without being asked for again. A controller retries a
// pending start at least every 5 s (its backoff's ceiling), so an entry
// older than this belongs to an instance it no longer wants.
const UnplacedTTL = 15 * time.Second

// Unplaced is an instance whose start the fleet refused for lack of
// capacity (a *NoCapacityError) and that has not been placed since: what
// elastic hosts (package hostpool) add hosts for.
type Unplaced struct {
	App      string
	Instance string
	// CPU and Memory are what the instance declared (zero: nothing).
	CPU    float64
	Memory int64
	// At is the latest refusal.
	At time.Time
	// Current: refused after the latest host became ready, so no host
	// ready now can take it. A refusal from before waits for its
	// controller's next try (which backs off up to 5 s) and may fit a
	// host that has joined since.
	Current bool
}

// Unplaced returns the instances refused for lack of capacity within
// UnplacedTTL and not placed since, sorted by instance id, each marked
// Current when no host has become ready since its refusal. An instance
// leaves the list when a host is chosen for it, or when its controller
// stops asking.
func (f *Fleet) Unplaced() []Unplaced {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.o.Now()
	out := make([]Unplaced, 0, len(f.unplaced))
	for id, u := range f.unplaced {
		if now.Sub(u.At) > UnplacedTTL {
			delete(f.unplaced, id)
			continue
		}
		u.Current = !u.At.Before(f.readyAt)
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b Unplaced) int { return strings.Compare(a.Instance, b.Instance) })
	return out
}

// Remove forgets the host name: its heartbeat and follower stop, its
// record is deleted from the store, and placement, Status and Adopt no
// longer see it. It refuses a host that still has instances placed on it
// (drain it first, and wait until Status counts none). It is how elastic
// hosts retire a host they destroy; the name's certificate is the caller's
// to refuse (pki.Nodes).
func (f *Fleet) Remove(name string) error {
	f.mu.Lock()
	h := f.hosts[name]
	if h == nil {
		f.mu.Unlock()
		return fmt.Errorf("remove host %s: %w", name, ErrUnknownHost)
	}
	if n := len(h.instances); n > 0 {
		f.mu.Unlock()
		return fmt.Errorf("remove host %s: %d instances are still placed on it; drain it first", name, n)
	}
	delete(f.hosts, name)
	h.removed = true
	if h.stopRun != nil {
		h.stopRun()
	}
	h.genCancel()
	c := h.client
	f.notifyLocked()
	f.mu.Unlock()
	c.HTTP.CloseIdleConnections()
	f.storeMu.Lock() // after any write of its record that began before
	err := f.o.Store.Delete(name)
	f.storeMu.Unlock()
	if err != nil {
		return fmt.Errorf("remove host %s: %w", name, err)
	}
	f.event(api.Event{Reason: fmt.Sprintf("host %s removed from the fleet", name)}, slog.LevelInfo)
	return nil
}
