package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// followServer is an admin API whose deploy stream breaks after one
// progress line (or that answers the deploy with an unknown outcome),
// and whose stored state then moves on, scripted: each GET /v1/deploy
// takes the next rollout of rollouts (nil once they are used up), and
// GET /v1/releases answers before until the first GET /v1/deploy, then
// after.
type followServer struct {
	unknown bool // answer POST /v1/deploy 503 with api.OutcomeHeader
	before  []api.ReleaseInfo
	after   []api.ReleaseInfo
	env     []api.EnvVar // GET /v1/env
	// vanish, when set, is closed once the stream broke: nothing answers
	// at the server's address any more (the server died with its leader).
	vanish net.Listener

	mu       sync.Mutex
	rollouts []*api.RolloutProgress
	polled   bool
}

func (f *followServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/releases":
		f.mu.Lock()
		rels := f.before
		if f.polled {
			rels = f.after
		}
		f.mu.Unlock()
		json.NewEncoder(w).Encode(rels)
	case "GET /v1/deploy":
		f.mu.Lock()
		f.polled = true
		var p *api.RolloutProgress
		if len(f.rollouts) > 0 {
			p, f.rollouts = f.rollouts[0], f.rollouts[1:]
		}
		f.mu.Unlock()
		json.NewEncoder(w).Encode(p)
	case "GET /v1/env":
		json.NewEncoder(w).Encode(f.env)
	case "POST /v1/deploy", "POST /v1/rollback", "POST /v1/env":
		if f.unknown {
			w.Header().Set(api.OutcomeHeader, api.OutcomeUnknown)
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: "unavailable: forward POST /v1/deploy to the leader s1: the leader s1 stopped leading"})
			return
		}
		w.WriteHeader(http.StatusOK)
		line := rolloutTo(3, api.PhaseSurging)
		if r.URL.Path == "/v1/rollback" {
			line = rolloutTo(1, api.PhaseSurging)
		}
		json.NewEncoder(w).Encode(api.DeployLine{Progress: line})
		w.(http.Flusher).Flush()
		if f.vanish != nil {
			f.vanish.Close() // before the stream breaks: no later dial gets through
		}
		// The leader dies: the stream breaks with no result.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	default:
		http.NotFound(w, r)
	}
}

func rolloutTo(v int, phase api.RolloutPhase) *api.RolloutProgress {
	return &api.RolloutProgress{Spec: api.RolloutSpec{From: v - 1, To: v, Desired: 2}, Target: v, Phase: phase, Total: 2}
}

func releases(statuses ...api.ReleaseStatus) []api.ReleaseInfo {
	var rels []api.ReleaseInfo
	for i, s := range statuses {
		rels = append(rels, api.ReleaseInfo{Version: i + 1, Digest: "sha256:" + strings.Repeat("ab", 32), Status: s, Current: s == api.ReleaseActive})
	}
	return rels
}

// TestDeployFollowsABrokenStream: a deploy whose stream breaks (the
// cluster's leader died) is followed on the stored state to its outcome:
// the resumed rollout's progress is passed on, and the result is the
// release's end; with the outcome unknown before any line, the release
// made after the one before the deploy is followed.
func TestDeployFollowsABrokenStream(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	cases := []followCase{
		{name: "resumed and served", srv: &followServer{
			before:   releases(api.ReleaseActive, api.ReleaseSuperseded),
			after:    releases(api.ReleaseSuperseded, api.ReleaseSuperseded, api.ReleaseActive),
			rollouts: []*api.RolloutProgress{rolloutTo(3, api.PhaseSurging), rolloutTo(3, api.PhaseDraining)},
		}, ok: true, version: 3},
		{name: "resumed and rolled back", srv: &followServer{
			before:   releases(api.ReleaseActive, api.ReleaseSuperseded),
			after:    releases(api.ReleaseSuperseded, api.ReleaseActive, api.ReleaseRolledBack),
			rollouts: []*api.RolloutProgress{rolloutTo(3, api.PhaseRollingBack)},
		}, version: 3, errHas: "v3 rolled_back after the leader changed"},
		{name: "outcome unknown, then served", srv: &followServer{
			unknown: true,
			before:  releases(api.ReleaseActive, api.ReleaseActive),
			after:   releases(api.ReleaseSuperseded, api.ReleaseSuperseded, api.ReleaseActive),
		}, ok: true, version: 3},
	}
	for _, tc := range cases {
		tc.call = func(c *Client, ctx context.Context, fn func(DeployLine)) (*DeployResult, error) {
			return c.Deploy(ctx, DeployOptions{Config: "app: web", Digest: d}, fn)
		}
		tc.target = 3
		runFollowCase(t, tc)
	}
	// An env change whose release serves succeeds only if the overrides
	// are still stored: the leader that lost the call may have put them
	// back while the rollout went on.
	env := func(stored []api.EnvVar) *followServer {
		return &followServer{
			before:   releases(api.ReleaseActive, api.ReleaseSuperseded),
			after:    releases(api.ReleaseSuperseded, api.ReleaseSuperseded, api.ReleaseActive),
			rollouts: []*api.RolloutProgress{rolloutTo(3, api.PhaseDraining)},
			env:      stored,
		}
	}
	setFeature := func(c *Client, ctx context.Context, fn func(DeployLine)) (*DeployResult, error) {
		return c.SetEnv(ctx, []EnvVar{{Name: "FEATURE", Value: "on"}}, []string{"OLD"}, fn)
	}
	runFollowCase(t, followCase{name: "env change stored", srv: env([]api.EnvVar{{Name: "FEATURE", Value: "on"}}),
		ok: true, version: 3, target: 3, call: setFeature})
	runFollowCase(t, followCase{name: "env change put back", srv: env([]api.EnvVar{{Name: "OLD", Value: "1"}}),
		version: 3, target: 3, errHas: "FEATURE is not set: the leader put the overrides back", call: setFeature})

	// A rollback makes no release: it is followed by its target, v1.
	runFollowCase(t, followCase{name: "rollback resumed and served", srv: &followServer{
		before:   releases(api.ReleaseSuperseded, api.ReleaseActive),
		after:    releases(api.ReleaseActive, api.ReleaseRolledBack),
		rollouts: []*api.RolloutProgress{rolloutTo(1, api.PhaseDraining)},
	}, ok: true, version: 1, target: 1, call: func(c *Client, ctx context.Context, fn func(DeployLine)) (*DeployResult, error) {
		return c.Rollback(ctx, 0, fn)
	}})
}

// followCase is one deploy of TestDeployFollowsABrokenStream.
type followCase struct {
	name    string
	srv     *followServer
	ok      bool
	version int
	errHas  string
	target  int // the release whose progress must be passed on
	call    func(*Client, context.Context, func(DeployLine)) (*DeployResult, error)
}

func runFollowCase(t *testing.T, tc followCase) {
	t.Helper()
	t.Run(tc.name, func(t *testing.T) {
		srv := httptest.NewServer(tc.srv)
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var lines []DeployLine
		res, err := tc.call(New(srv.URL, "tok"), ctx, func(l DeployLine) { lines = append(lines, l) })
		if err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		if res.OK != tc.ok || res.Version != tc.version || !strings.Contains(res.Error, tc.errHas) {
			t.Fatalf("result %+v, want ok %t, v%d, error with %q", res, tc.ok, tc.version, tc.errHas)
		}
		var followed, progress bool
		for _, l := range lines {
			followed = followed || strings.Contains(l.Log, "following the deploy")
			progress = progress || l.Progress != nil && l.Progress.Spec.To == tc.target
		}
		if !followed || !tc.srv.unknown && !progress {
			t.Fatalf("lines %+v: want the follow announced and v%d's progress", lines, tc.target)
		}
	})
}

// TestDeployUnknownWhenNothingAnswers: an env change whose stream broke
// and whose server then answers no more has an unknown outcome (the
// overrides may be stored, the rollout may go on elsewhere): its error
// is an *OutcomeUnknownError, which a caller must tell apart from the
// *UnreachableError it wraps (a call that reached nothing). A test that
// took it for a refusal called a linearizable history illegal.
func TestDeployUnknownWhenNothingAnswers(t *testing.T) {
	f := &followServer{before: releases(api.ReleaseActive)}
	srv := httptest.NewServer(f)
	defer srv.Close()
	f.vanish = srv.Listener
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := New(srv.URL, "tok")
	// No connection kept open to be used again: every call after the
	// break dials, and finds nothing answering.
	c.HTTP.Transport = &http.Transport{DisableKeepAlives: true}
	res, err := c.SetEnv(ctx, []EnvVar{{Name: "FEATURE", Value: "on"}}, nil, nil)
	var unknown *OutcomeUnknownError
	if !errors.As(err, &unknown) {
		t.Fatalf("SetEnv: %+v, %v (%T): want an *OutcomeUnknownError", res, err, err)
	}
	var gone *UnreachableError
	if !errors.As(unknown.Why, &gone) || !strings.Contains(err.Error(), "outcome is unknown") {
		t.Fatalf("SetEnv: %v: want the outcome unknown because nothing answers", err)
	}
}

// TestDeployUnknownWhenTheCallerStops: a deploy whose caller's context
// ends after its stream began (here at its first progress line; the
// stream then breaks) has an unknown outcome, not a plain error: the
// rollout may go on on the leader.
func TestDeployUnknownWhenTheCallerStops(t *testing.T) {
	f := &followServer{before: releases(api.ReleaseActive, api.ReleaseSuperseded)}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stopped := errors.New("the caller stopped waiting")
	d := "sha256:" + strings.Repeat("ab", 32)
	res, err := New(srv.URL, "tok").Deploy(ctx, DeployOptions{Config: "app: web", Digest: d}, func(l DeployLine) {
		if l.Progress != nil {
			cancel(stopped)
		}
	})
	var unknown *OutcomeUnknownError
	if !errors.As(err, &unknown) || !errors.Is(err, stopped) || !strings.Contains(err.Error(), "outcome is unknown") {
		t.Fatalf("Deploy: %+v, %v (%T): want an *OutcomeUnknownError saying the caller stopped", res, err, err)
	}
}
