package demo

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/dashboard"
)

func groupOf(t *testing.T, s *Source, app string) dashboard.Group {
	t.Helper()
	gs, err := s.Groups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.App == app {
			return g
		}
	}
	t.Fatalf("no group %s", app)
	return dashboard.Group{}
}

// stepUntil steps the simulation until ok, at most 100 times.
func stepUntil(t *testing.T, s *Source, what string, ok func() bool) {
	t.Helper()
	for range 100 {
		if ok() {
			return
		}
		s.Step()
	}
	t.Fatalf("not reached in 100 steps: %s", what)
}

func inService(g dashboard.Group) (ids []string) {
	for _, in := range g.Instances {
		if in.State == dashboard.StateInService {
			ids = append(ids, in.ID)
		}
	}
	return ids
}

func TestKillIsReplacedAndDeployRollsOut(t *testing.T) {
	s := New(Options{Seed: 3})
	if err := s.Kill("web-4"); err != nil {
		t.Fatal(err)
	}
	stepUntil(t, s, "web-4 replaced", func() bool {
		g := groupOf(t, s, "web")
		up := inService(g)
		for _, id := range up {
			if id == "web-4" {
				return false
			}
		}
		return len(up) == g.Desired
	})
	evs, _ := s.Events(context.Background(), 0, 0)
	replaced := false
	for _, e := range evs {
		replaced = replaced || (e.Kind == dashboard.KindReplace && e.Instance == "web-4")
	}
	if !replaced {
		t.Fatal("no replace event for web-4")
	}

	v, err := s.Deploy("web")
	if err != nil || v != 4 {
		t.Fatalf("deploy: %d %v", v, err)
	}
	if _, err := s.Deploy("web"); !errors.Is(err, dashboard.ErrConflict) {
		t.Fatalf("second deploy: %v, want ErrConflict", err)
	}
	maxDone := 0
	stepUntil(t, s, "deploy done", func() bool {
		d := groupOf(t, s, "web").Deploy
		maxDone = max(maxDone, d.Done)
		return !d.Active
	})
	g := groupOf(t, s, "web")
	if maxDone < 1 || g.Deploy.Phase != "done" || g.Release != 4 {
		t.Fatalf("deploy ended as %+v (max done %d)", g.Deploy, maxDone)
	}
	for _, in := range g.Instances {
		if in.State == dashboard.StateInService && in.Release != 4 {
			t.Fatalf("old instance still serving: %+v", in)
		}
	}
	if err := s.Rollback(context.Background(), "web", 3); err != nil {
		t.Fatal(err)
	}
	stepUntil(t, s, "rollback done", func() bool { return !groupOf(t, s, "web").Deploy.Active })
	rels, _ := s.Releases(context.Background(), "web")
	for _, r := range rels {
		if (r.Version == 3) != (r.Status == "current") {
			t.Fatalf("after rollback release %d is %s", r.Version, r.Status)
		}
	}
	if err := s.Rollback(context.Background(), "web", 99); !errors.Is(err, dashboard.ErrNotFound) {
		t.Fatalf("rollback to an unknown release: %v", err)
	}
}

func TestLogTailFollows(t *testing.T) {
	s := New(Options{Seed: 5, Tick: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 1000)
	done := make(chan error, 1)
	go func() {
		done <- s.LogTail(ctx, "api-1", 10, true, writerFunc(func(p []byte) (int, error) {
			got <- string(p)
			return len(p), nil
		}))
	}()
	s.Step()
	deadline := time.After(10 * time.Second)
	for n := 0; n == 0; {
		select {
		case line := <-got:
			n = len(line)
		case <-deadline:
			t.Fatal("no log line followed")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("LogTail: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
