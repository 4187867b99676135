package controller

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/store"
)

// servedWriter is a store.Writer whose MarkServed counts its calls and
// returns when release is closed; nothing else of it is called.
type servedWriter struct {
	store.Writer
	calls   atomic.Int32
	release chan struct{}
}

func (w *servedWriter) MarkServed(string, int, time.Time) error {
	w.calls.Add(1)
	<-w.release
	return nil
}

// TestMarkServedWritesOnceForConcurrentCallers: instances of a release
// that turn healthy while its served record is being written wait for
// that write instead of each writing it again (through Raft, one
// serialised write per instance held each out of service behind the
// others'); all of them return once it is written, and the release is
// recorded served.
func TestMarkServedWritesOnceForConcurrentCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &servedWriter{release: make(chan struct{})}
		c := &Controller{cfg: &config.App{Name: "web"}, o: Options{Writer: w}, log: slog.New(slog.DiscardHandler), now: time.Now,
			served: map[int]bool{}, marking: map[int]chan struct{}{}}
		c.events = newEventLog(c.storeEvents, c.log, time.Now)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() { c.markServed(3) })
		}
		synctest.Wait() // every caller is in the write or waits for it
		if n := w.calls.Load(); n != 1 {
			t.Fatalf("%d writes of the served record while it was being written, want 1", n)
		}
		close(w.release)
		wg.Wait()
		c.markServed(3)
		if n := w.calls.Load(); n != 1 || !c.served[3] {
			t.Fatalf("after the write: %d writes, served %v; want 1 and true", n, c.served[3])
		}
	})
}
