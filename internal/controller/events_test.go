package controller

import (
	"fmt"
	"log/slog"
	"path/filepath"
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
	c := &Controller{cfg: &config.App{Name: "web"}, o: Options{Store: st}}
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
