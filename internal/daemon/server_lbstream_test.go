package daemon

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// TestLBStreamHosts: the balancer nodes as `shoal hosts` lists them: a
// node expected from before this run is joining until it calls; a node
// that calls is ready with its address and the version it applied of the
// server's (0 for a call of another epoch); after lbNodeGone without a
// call it is unreachable, saying for how long.
func TestLBStreamHosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &lbStream{epoch: "e1", version: 9, wake: make(chan struct{}), done: make(chan struct{}), log: slog.New(slog.DiscardHandler),
			cur: lbConfigs()[0], nodes: map[string]nodeMark{}, acked: make(chan struct{})}
		s.expect([]string{"lb-3"})
		s.mark("lb-2", "e0", "10.0.0.8", 4)
		s.mark("lb-1", "e1", "10.0.0.7", 9)
		start := time.Now()
		want := []api.HostStatus{
			{Name: "lb-1", Role: api.RoleLB, State: api.HostReady, LastHeartbeat: start,
				Balancer: &api.BalancerNodeStatus{Addr: "10.0.0.7", Applied: 9, ServerVersion: 9}},
			{Name: "lb-2", Role: api.RoleLB, State: api.HostReady, LastHeartbeat: start,
				Balancer: &api.BalancerNodeStatus{Addr: "10.0.0.8", Applied: 0, ServerVersion: 9}},
			{Name: "lb-3", Role: api.RoleLB, State: api.HostJoining, Reason: "joined before this run of the server; no call yet",
				Balancer: &api.BalancerNodeStatus{ServerVersion: 9}},
		}
		checkHosts(t, s.hosts(), want)

		time.Sleep(lbNodeGone - time.Second) // the fake clock of the bubble
		s.mark("lb-1", "e1", "10.0.0.7", 9)
		time.Sleep(time.Second)
		want[0].LastHeartbeat = start.Add(lbNodeGone - time.Second)
		want[1].State, want[1].Reason = api.HostUnreachable, "no call for 40s"
		checkHosts(t, s.hosts(), want)
	})
}

func checkHosts(t *testing.T, got, want []api.HostStatus) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d nodes, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Role != w.Role || g.State != w.State || g.Reason != w.Reason ||
			!g.LastHeartbeat.Equal(w.LastHeartbeat) || g.Balancer == nil || *g.Balancer != *w.Balancer {
			t.Errorf("node %d = %+v %+v, want %+v %+v", i, g, g.Balancer, w, w.Balancer)
		}
	}
}

// TestLBStreamExpectAfresh: at a cluster leader's term start every node
// known and every stored one counts as expected: a drain waits for a node
// that called in an earlier term (its version was of another epoch) and
// for one that has not called yet, until each calls at the version or,
// for one that never calls, until lbNodeGone (the drain timeout bounds a
// real drain before that).
func TestLBStreamExpectAfresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &lbStream{epoch: "e1", version: 9, wake: make(chan struct{}), done: make(chan struct{}), log: slog.New(slog.DiscardHandler),
			cur: lbConfigs()[0], nodes: map[string]nodeMark{}, acked: make(chan struct{})}
		s.mark("lb-1", "e1", "10.0.0.7", 9) // applied version 9 of an earlier term
		s.expectAfresh([]string{"lb-2", "lb-3"})
		s.newEpoch()
		s.version = 3

		done := make(chan error, 1)
		go func() { done <- s.delivered(t.Context(), 3) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("delivered before any node called in the new term: %v", err)
		default:
		}
		s.mu.Lock()
		epoch := s.epoch
		s.mu.Unlock()
		s.mark("lb-1", epoch, "10.0.0.7", 3)
		s.mark("lb-2", epoch, "10.0.0.8", 3)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("delivered while lb-3 (stored, not called) is expected: %v", err)
		default:
		}
		time.Sleep(lbNodeGone) // lb-3 never calls: it ages out
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestLBStreamWaitEndsWhenGateCloses: a node waiting in the long poll of
// a server that stops leading meanwhile (its gate closes: cut off from
// its peers, issue 14) gets a 503 within lbGateEvery, not at the end of
// lbPollWait, and moves to the next server; while the gate stays open
// the call waits.
func TestLBStreamWaitEndsWhenGateCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deposed atomic.Bool
		opened := make(chan struct{})
		close(opened)
		s := &lbStream{epoch: "e1", version: 9, wake: make(chan struct{}), done: make(chan struct{}), opened: opened,
			log: slog.New(slog.DiscardHandler), cur: lbConfigs()[0], nodes: map[string]nodeMark{}, acked: make(chan struct{}),
			gate: func() error {
				if deposed.Load() {
					return errors.New("this server does not lead the cluster")
				}
				return nil
			}}
		rec := httptest.NewRecorder()
		answered := make(chan time.Time, 1)
		start := time.Now()
		go func() {
			s.serveHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/lb/config?epoch=e1&after=9", nil))
			answered <- time.Now()
		}()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		select {
		case <-answered:
			t.Fatal("the call answered while the server leads and nothing changed")
		default:
		}
		deposed.Store(true)
		at := <-answered
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("answer %d, want 503", rec.Code)
		}
		if took := at.Sub(start); took > 5*time.Second+lbGateEvery {
			t.Errorf("answered %s after the call, want within %s of the gate closing at 5s", took, lbGateEvery)
		}
	})
}
