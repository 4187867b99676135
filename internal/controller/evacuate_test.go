package controller

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// evacuatingHost is the harness's LocalHost, an Evacuator whose
// evacuations the test sends.
type evacuatingHost struct {
	*LocalHost
	ch chan Evacuation
}

func (h *evacuatingHost) Evacuations() <-chan Evacuation { return h.ch }

// ids returns the ids of st's instances, sorted.
func ids(st api.Status) []string {
	var out []string
	for _, in := range st.Instances {
		out = append(out, in.ID)
	}
	slices.Sort(out)
	return out
}

// notMoving accepts a status where no instance moves.
func notMoving(st api.Status) error {
	for _, in := range st.Instances {
		if in.Moving != "" {
			return fmt.Errorf("%s moving %q", in.ID, in.Moving)
		}
	}
	return nil
}

// TestEvacuation moves a group's instances on a host that asks for it:
// during a rollout the move waits, and the rollout replaces the old
// release's instances itself; without one, each instance is replaced
// launch first and stopped once its replacement serves; a withdrawn
// evacuation leaves the group as it was, with nothing moving.
func TestEvacuation(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 2, 4)
	ev := &evacuatingHost{ch: make(chan Evacuation, 2)}
	h := startOn(t, dir, cfg, pool.Options{Name: "web", DrainTimeout: time.Second}, func(l *LocalHost) Host {
		ev.LocalHost = l
		return ev
	})
	v1 := ids(h.waitFor("v1 serving", onRelease(1, 2)))
	ctx := testenv.Context(t, 60*time.Second)

	// A rollout in progress: the evacuation of the v1 instances waits for
	// it, and the rollout replaces them.
	os.WriteFile(filepath.Join(dir, "index.txt"), []byte("artifact v2\n"), 0o644)
	setMode(t, dir, "serve", "serve", "deploy:\n  max_surge: 1\n")
	type result struct {
		v   int
		err error
	}
	deployed := make(chan result, 1)
	go func() {
		v, err := h.deploy(ctx, DeployRequest{})
		deployed <- result{v, err}
	}()
	if err := testenv.WaitFor(ctx, func() error {
		if h.c.Rollout() == nil {
			return fmt.Errorf("no rollout yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev.ch <- Evacuation{Host: "local", IDs: v1, Reason: "draining"}:
	case <-ctx.Done():
		t.Fatal("the evacuation was not read")
	}
	if r := <-deployed; r.v != 2 || r.err != nil {
		t.Fatalf("deploy v2 during the evacuation: %d, %v", r.v, r.err)
	}
	v2 := ids(h.waitFor("v2 serving, nothing moving", func(st api.Status) error {
		if err := onRelease(2, 2)(st); err != nil {
			return err
		}
		return notMoving(st)
	}))
	for _, id := range v1 {
		if strings.Contains(eventsText(t, h.c), "moving "+id) {
			t.Errorf("%s was moved besides the rollout:\n%s", id, eventsText(t, h.c))
		}
	}

	// No rollout: each instance is replaced, launch first.
	ev.ch <- Evacuation{Host: "local", IDs: v2, Reason: "draining"}
	h.waitFor("the v2 instances replaced", func(st api.Status) error {
		if err := onRelease(2, 2)(st); err != nil {
			return err
		}
		for _, id := range ids(st) {
			if slices.Contains(v2, id) {
				return fmt.Errorf("%s still runs", id)
			}
		}
		return nil
	})
	var wants []string
	for _, id := range v2 {
		wants = append(wants, "moving "+id+" off host local (draining): replacement ", "stopped "+id+": moved off host local (draining): replacement ")
	}
	waitEvents(t, h.c, wants...)
	evs, err := h.c.Events(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range v2 {
		var repl string
		for _, e := range evs {
			if r, ok := strings.CutPrefix(e.Reason, "moving "+id+" off host local (draining): replacement "); ok {
				repl = r
			}
		}
		served := slices.IndexFunc(evs, func(e api.Event) bool { return e.Instance == repl && e.State == "in_service" })
		drained := slices.IndexFunc(evs, func(e api.Event) bool { return e.Instance == id && e.State == "draining" })
		if served < 0 || drained < served {
			t.Errorf("%s drained at event %d, its replacement %q in service at %d", id, drained, repl, served)
		}
	}

	// A withdrawn evacuation, sent right after: whatever started is
	// settled, nothing moves.
	now := ids(h.c.Status())
	ev.ch <- Evacuation{Host: "local", IDs: now, Reason: "draining"}
	ev.ch <- Evacuation{Host: "local", Reason: "draining"}
	waitEvents(t, h.c, "host local no longer draining: ")
	h.waitFor("two in service, nothing moving", func(st api.Status) error {
		if err := inService(2)(st); err != nil {
			return err
		}
		return notMoving(st)
	})
}

// TestMovesArePruned checks which requested moves the controller
// forgets: those of instances that ended, and those of ids it never knew
// after evacuateUnknownFor (an adoption in progress finds the others).
func TestMovesArePruned(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	c := &Controller{instances: map[string]*instance{"running": {id: "running"}}, moves: map[string]*move{
		"running":       {host: "h1", at: now.Add(-time.Hour), known: true},
		"ended":         {host: "h1", at: now, known: true},
		"adopting":      {host: "h1", at: now.Add(-evacuateUnknownFor + time.Second)},
		"never-adopted": {host: "h1", at: now.Add(-evacuateUnknownFor)},
	}}
	c.pruneMovesLocked(now)
	var kept []string
	for id := range c.moves {
		kept = append(kept, id)
	}
	slices.Sort(kept)
	if want := []string{"adopting", "running"}; !slices.Equal(kept, want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
}
