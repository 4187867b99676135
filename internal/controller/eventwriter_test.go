package controller

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestEventWriterKeepsOrderThroughRefusedWrites: Add returns at once even
// while the store refuses writes; the refused events stay queued and are
// stored in order once writes succeed again, the failures counted; past
// the bound the oldest are dropped and counted; Close ends Run.
func TestEventWriterKeepsOrderThroughRefusedWrites(t *testing.T) {
	var mu sync.Mutex
	refuse := true
	var stored []string
	w := NewEventWriter(func(e api.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			return errors.New("disk full")
		}
		stored = append(stored, e.Reason)
		return nil
	}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run()
	}()
	for i := range 3 {
		w.Add(api.Event{Type: "host", Reason: strconv.Itoa(i)})
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if h := w.Health(); h.WriteErrors == 0 || h.Pending != 3 || h.LastError != "disk full" {
			return fmt.Errorf("health %+v, want the refusal counted and 3 pending", h)
		}
		return nil
	})
	mu.Lock()
	refuse = false
	mu.Unlock()
	w.Add(api.Event{Type: "host", Reason: "3"})
	testenv.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(stored) != "[0 1 2 3]" {
			return fmt.Errorf("stored %v, want 0 to 3 in order", stored)
		}
		if h := w.Health(); h.Pending != 0 || h.LastError != "" {
			return fmt.Errorf("health %+v after the store took them", h)
		}
		return nil
	})
	w.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after Close")
	}

	// Past the bound: counted drops, never silent.
	full := NewEventWriter(func(api.Event) error { return errors.New("disk full") }, nil)
	for i := range maxPendingEvents + 2 {
		full.Add(api.Event{Type: "host", Reason: strconv.Itoa(i)})
	}
	if h := full.Health(); h.Pending != maxPendingEvents || h.Dropped != 2 {
		t.Fatalf("health %+v, want %d pending and 2 dropped", h, maxPendingEvents)
	}
	mfs, err := full.Metrics().Gather()
	if err != nil || len(mfs) != 3 {
		t.Fatalf("metrics: %d families, %v", len(mfs), err)
	}
}
