package controller

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestEventLogBoundsAndCountsWhatItCannotStore: with a store that refuses
// every write (closed), queued events are kept up to the bound, the rest
// counted as dropped, the failure counted and reported, record returns the
// error, and run still ends on close.
func TestEventLogBoundsAndCountsWhatItCannotStore(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &Controller{cfg: &config.App{Name: "web"}, o: Options{Store: st, Writer: st}}
	st.Close()
	l := newEventLog(c.storeEvents, slog.New(slog.DiscardHandler), time.Now)
	for i := range maxPendingEvents + 5 {
		l.add(api.Event{Type: "state", Reason: fmt.Sprint(i)})
	}
	if h := l.health(); h.Pending != maxPendingEvents || h.Dropped != 5 {
		t.Fatalf("health %+v, want %d pending and 5 dropped", h, maxPendingEvents)
	}
	if err := l.record(api.Event{Type: "scale", Reason: "desired 1 -> 2"}); err == nil || !strings.Contains(err.Error(), "database not open") {
		t.Fatalf("record on a store that cannot be written = %v", err)
	}
	if h := l.health(); h.WriteErrors == 0 || h.Pending != maxPendingEvents || !strings.Contains(l.problem(), "5 dropped") {
		t.Fatalf("health %+v, problem %q", h, l.problem())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run()
	}()
	l.close()
	ctx := testenv.Context(t, 10*time.Second)
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("run did not end after close")
	}
}

// TestEventLogWritesInBatches: queued events reach the store in as few
// writes as maxEventWrite allows, in order; when a write fails, the
// batches before it stay stored and the rest is queued again, in order,
// and stored by the next flush.
func TestEventLogWritesInBatches(t *testing.T) {
	var writes [][]api.Event
	fail := false
	write := func(evs []api.Event) error {
		if fail && len(writes) == 1 {
			return fmt.Errorf("disk full")
		}
		writes = append(writes, slices.Clone(evs))
		return nil
	}
	l := newEventLog(write, slog.New(slog.DiscardHandler), time.Now)
	n := 2*maxEventWrite + 3
	for i := range n {
		l.add(api.Event{Type: "state", Reason: strconv.Itoa(i)})
	}
	fail = true
	l.wmu.Lock()
	err := l.flushLocked()
	l.wmu.Unlock()
	if err == nil || len(writes) != 1 || len(writes[0]) != maxEventWrite {
		t.Fatalf("flush with the second write failing: %v, writes of %d", err, len(writes))
	}
	if h := l.health(); h.Pending != n-maxEventWrite {
		t.Fatalf("%d events pending after the failed write, want %d", h.Pending, n-maxEventWrite)
	}
	fail = false
	l.wmu.Lock()
	err = l.flushLocked()
	l.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	next := 0
	for _, w := range writes {
		sizes = append(sizes, len(w))
		for _, e := range w {
			if e.Reason != strconv.Itoa(next) {
				t.Fatalf("event %q stored where %d was due", e.Reason, next)
			}
			next++
		}
	}
	if next != n || fmt.Sprint(sizes) != fmt.Sprint([]int{maxEventWrite, maxEventWrite, 3}) {
		t.Fatalf("stored %d events in writes of %v, want %d in writes of %d, %d and 3", next, sizes, n, maxEventWrite, maxEventWrite)
	}
	if h := l.health(); h.Pending != 0 || h.WriteErrors != 1 {
		t.Fatalf("health %+v, want nothing pending and one failed write", h)
	}
}
