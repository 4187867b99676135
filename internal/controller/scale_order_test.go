package controller

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/store"
)

// holdingWriter is a real store whose first group write, once stored,
// waits for hold to close before it returns: as a Raft write does whose
// commit is acknowledged late while a later write goes through.
type holdingWriter struct {
	*store.Store
	hold  chan struct{}
	mu    sync.Mutex
	first bool
}

func (w *holdingWriter) wait() {
	w.mu.Lock()
	first := !w.first
	w.first = true
	w.mu.Unlock()
	if first {
		<-w.hold
	}
}

func (w *holdingWriter) PutGroup(g api.Group) error {
	err := w.Store.PutGroup(g)
	w.wait()
	return err
}

func (w *holdingWriter) UpdateGroup(app string, fn func(*api.Group) error) (api.Group, error) {
	g, err := w.Store.UpdateGroup(app, fn)
	w.wait()
	return g, err
}

// TestScalesTakeEffectInStoreOrder: of two scales that race, the one
// stored last is the count the controller runs and reports, whichever
// returns from the store first. (Found by the e2e linearizability test:
// concurrent `scaled from=3 to=5`, `from=3 to=2` in a leader's log.)
func TestScalesTakeEffectInStoreOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := store.Open(filepath.Join(t.TempDir(), "shoal.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		g := api.Group{App: "web", Min: 0, Max: 8, Desired: 3}
		if err := st.PutGroup(g); err != nil {
			t.Fatal(err)
		}
		w := &holdingWriter{Store: st, hold: make(chan struct{})}
		c := &Controller{cfg: &config.App{Name: "web"}, o: Options{Store: st, Writer: w}, log: slog.New(slog.DiscardHandler),
			now: time.Now, group: g, kick: make(chan struct{}, 1), groupWrite: make(chan struct{}, 1)}
		c.events = newEventLog(c.storeEvents, c.log, time.Now)
		ctx := context.Background()
		errs := make(chan error, 2)
		go func() { errs <- c.Scale(ctx, 5) }()
		synctest.Wait() // 5 is stored; its write has not returned
		go func() { errs <- c.Scale(ctx, 2) }()
		synctest.Wait() // 2 waits for it, or went through meanwhile
		close(w.hold)
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		stored, _, err := st.GetGroup("web")
		if err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		got := c.group.Desired // what the reconciler runs, and Status reports
		c.mu.Unlock()
		if got != stored.Desired {
			t.Fatalf("the controller runs desired %d, the store holds %d", got, stored.Desired)
		}
	})
}
