package uisource

import (
	"context"
	"fmt"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dashboard"
)

// instanceScan is how many of the newest events Instance searches for
// one instance's history.
const instanceScan = 2000

// Events implements dashboard.Source. The controller lists events oldest
// first from a sequence number; the newest limit are found by starting
// limit before the store's last sequence number.
func (s *Source) Events(ctx context.Context, afterSeq uint64, limit int) ([]dashboard.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	evs, err := s.newest(afterSeq, limit)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Event, len(evs))
	for i, e := range evs {
		out[i] = s.event(e).Event
	}
	return out, nil
}

// newest returns at most limit controller events after afterSeq, the
// newest of them, oldest first.
func (s *Source) newest(afterSeq uint64, limit int) ([]api.Event, error) {
	last, err := s.o.Store.LastEventSeq()
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	from := afterSeq
	if last > uint64(limit) {
		from = max(from, last-uint64(limit))
	}
	evs, err := s.o.Controller.Events(from, limit)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return evs, nil
}

// mapped is a dashboard event with the instance facts its controller
// event carried.
type mapped struct {
	dashboard.Event
	state   string
	release int
	addr    string
}

// instanceEvents returns the events of instance id among the newest
// instanceScan, oldest first.
func (s *Source) instanceEvents(id string) ([]mapped, error) {
	evs, err := s.newest(0, instanceScan)
	if err != nil {
		return nil, err
	}
	var out []mapped
	for _, e := range evs {
		if e.Instance == id {
			out = append(out, s.event(e))
		}
	}
	return out, nil
}

// event turns a controller event into a dashboard event: its kind says
// what the dashboard's timeline filters on (deploys, scaling decisions,
// replacements, health changes, other state changes), its reason keeps
// the controller's words.
func (s *Source) event(e api.Event) mapped {
	m := mapped{Event: dashboard.Event{Seq: e.Seq, Time: e.Time, App: s.app, Instance: e.Instance,
		Kind: kind(e), Reason: e.Reason}, state: e.State, release: e.Release, addr: e.Addr}
	if e.Type == "state" && e.State != "" {
		switch {
		case e.From != "":
			m.Reason = e.From + " → " + e.State + ": " + e.Reason
		default:
			m.Reason = e.State + ": " + e.Reason
		}
	}
	return m
}

// kind classifies a controller event for the timeline.
func kind(e api.Event) string {
	t := e.Type
	switch {
	case t == "state":
		switch {
		case e.State == dashboard.StateFailed:
			// A failed instance is gone; the reconciler launches its
			// replacement at once (see controller.exited).
			return dashboard.KindReplace
		case e.State == dashboard.StatePending && strings.HasPrefix(e.Reason, "replace "):
			return dashboard.KindReplace
		case e.State == dashboard.StateDraining && strings.HasPrefix(e.Reason, "unhealthy;"):
			// An unhealthy instance retired once its replacement serves.
			return dashboard.KindReplace
		case e.State == dashboard.StateUnhealthy, e.From == dashboard.StateUnhealthy:
			return dashboard.KindHealth
		}
		return dashboard.KindState
	case t == "backoff":
		// Replacements held back by a crash loop.
		return dashboard.KindReplace
	case t == "health":
		return dashboard.KindHealth
	case strings.Contains(t, "scale"):
		return dashboard.KindScale
	case t == "release", t == "build", strings.Contains(t, "deploy"), strings.Contains(t, "rollout"),
		strings.Contains(t, "rollback"), strings.Contains(t, "hook"):
		return dashboard.KindDeploy
	}
	return t
}
