package agentclient_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestMain doubles as the instance program (agenttest.MaybeServe) and fails
// the run when a goroutine outlives the tests.
func TestMain(m *testing.M) {
	agenttest.MaybeServe()
	goleak.VerifyTestMain(m)
}

// run starts an instance on f's agent and returns its pid.
func run(t *testing.T, ctx context.Context, f *agenttest.Fixture, id string) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	info, err := f.Client.Start(ctx, 1, api.LaunchSpec{ID: id, App: "web", Release: 1, Digest: f.Digest, Command: exe,
		Env: []string{agenttest.ServeEnv + "=1"}, StopTimeoutMS: 5000})
	if err != nil {
		t.Fatal(err)
	}
	return info.PID
}

// nextIDs reads exits until it has n, and returns their ids in order.
func nextIDs(t *testing.T, ctx context.Context, fl *agentclient.Follower, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		exits, err := fl.Next(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", ids, err)
		}
		for _, x := range exits {
			ids = append(ids, x.ID)
		}
	}
	if len(ids) != n {
		t.Fatalf("exits %v; want %d", ids, n)
	}
	return ids
}

// TestFollowerResumesAfterRestart: a follower waiting in a long poll when
// the agent's server goes away, and exits that happen while nothing
// listens, are delivered once each, in order, when the server is back.
func TestFollowerResumesAfterRestart(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{PollWait: 2 * time.Second})
	ctx := testenv.Context(t, time.Minute)
	for _, id := range []string{"a", "b", "c", "d"} {
		run(t, ctx, f, id)
	}
	list, err := f.Client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fl := f.Client.FollowExits(list.Epoch, list.ExitSeq)
	fl.MaxBackoff = 200 * time.Millisecond
	var retries atomic.Int32
	fl.OnRetry = func(err error) {
		if !strings.Contains(err.Error(), f.Client.Addr()) {
			t.Errorf("retried after %v, which does not name the agent", err)
		}
		retries.Add(1)
	}
	if err := f.Client.Stop(ctx, 1, "a"); err != nil {
		t.Fatal(err)
	}
	if got := nextIDs(t, ctx, fl, 1); got[0] != "a" {
		t.Fatalf("first exit %v; want a", got)
	}

	// A long poll in flight when the server closes every connection.
	type result struct {
		ids []string
		err error
	}
	polled := make(chan result, 1)
	go func() {
		exits, err := fl.Next(ctx)
		var ids []string
		for _, x := range exits {
			ids = append(ids, x.ID)
		}
		polled <- result{ids, err}
	}()
	f.Agent.Restart(func() {
		// Exits recorded while nothing listens.
		for _, id := range []string{"b", "c"} {
			if err := f.Agent.Runtime.Stop(ctx, id); err != nil {
				t.Error(err)
			}
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if retries.Load() == 0 {
				return errors.New("the follower has not retried yet")
			}
			return nil
		})
	})
	r := <-polled
	if r.err != nil {
		t.Fatal(r.err)
	}
	ids := r.ids
	if len(ids) < 2 {
		ids = append(ids, nextIDs(t, ctx, fl, 2-len(ids))...)
	}
	if len(ids) != 2 || ids[0] != "b" || ids[1] != "c" {
		t.Fatalf("exits across the restart %v; want [b c]", ids)
	}
	if err := f.Client.Stop(ctx, 1, "d"); err != nil {
		t.Fatal(err)
	}
	if got := nextIDs(t, ctx, fl, 1); got[0] != "d" {
		t.Fatalf("exit after the restart %v; want d", got)
	}
	if epoch, seq := fl.Cursor(); epoch != list.Epoch || seq != 4 {
		t.Errorf("cursor (%s, %d); want (%s, 4)", epoch, seq, list.Epoch)
	}
}

// TestFollowerReportsGone: exits dropped from the ring, and exits of an
// earlier run of the agent, are ErrExitsGone (410): the caller lists again.
func TestFollowerReportsGone(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{ExitRing: 2})
	ctx := testenv.Context(t, time.Minute)
	fl := f.Client.FollowExits("", 0)
	for _, id := range []string{"a", "b", "c"} {
		run(t, ctx, f, id)
		if err := f.Client.Stop(ctx, 1, id); err != nil {
			t.Fatal(err)
		}
	}
	_, err := fl.Next(ctx)
	var se *agentclient.StatusError
	if !errors.Is(err, agentclient.ErrExitsGone) || !errors.As(err, &se) || se.Status != http.StatusGone ||
		!strings.Contains(err.Error(), f.Client.Addr()) {
		t.Fatalf("next after the ring dropped exit 1: %v; want a 410 naming the agent", err)
	}
	// Listing gives the cursor to follow from.
	list, err := f.Client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fl = f.Client.FollowExits(list.Epoch, list.ExitSeq)
	run(t, ctx, f, "d")
	if err := f.Client.Stop(ctx, 1, "d"); err != nil {
		t.Fatal(err)
	}
	if got := nextIDs(t, ctx, fl, 1); got[0] != "d" {
		t.Fatalf("exit after re-listing %v; want d", got)
	}

	// A new run of the agent numbers its exits anew: the old cursor is gone.
	f.Agent.Close()
	ag := agenttest.Start(t, f.CA, f.Artifacts, agenttest.Options{Dir: f.Agent.Dir})
	c := ag.Client()
	if _, err := c.FollowExits(list.Epoch, list.ExitSeq+1).Next(ctx); !errors.Is(err, agentclient.ErrExitsGone) {
		t.Errorf("next with the previous run's cursor: %v; want ErrExitsGone", err)
	}
	if _, err := c.Exits(ctx, ag.Epoch(), 5); err == nil || !strings.Contains(err.Error(), "beyond") {
		t.Errorf("exits after a sequence number never given: %v; want a 400", err)
	}
}

// TestErrorsNameTheAgent: an address where nothing answers is named, and
// the follower gives up at its ctx.
func TestErrorsNameTheAgent(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	url := f.Agent.URL
	f.Agent.Close()
	c := agentclient.New(url, f.CA.ClientTLS(t))
	defer c.HTTP.CloseIdleConnections()
	ctx := testenv.Context(t, 30*time.Second)
	if _, err := c.List(ctx); err == nil || !strings.Contains(err.Error(), c.Addr()) || !strings.Contains(err.Error(), "list instances") {
		t.Errorf("list from a closed agent: %v; want an error naming %s and the operation", err, c.Addr())
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	var retries atomic.Int32
	fl := c.FollowExits("", 0)
	fl.OnRetry = func(error) { retries.Add(1) }
	if _, err := fl.Next(short); !errors.Is(err, context.DeadlineExceeded) || retries.Load() == 0 {
		t.Errorf("next against a closed agent: %v after %d retries; want the ctx's deadline after retrying", err, retries.Load())
	}
}
