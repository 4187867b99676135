package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// deadLeaderFollower is a follower that still names a dead leader: it
// answers every call with a 307 to the same path at dead, where nothing
// listens.
func deadLeaderFollower(t *testing.T) (follower, dead string) {
	dead = "http://" + testenv.FreeAddr(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, dead+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, dead
}

// A follower that still names a dead leader answers a node's poll with a
// 307 to it; the failed redirect is the election under way (call again
// soon), while a server that does not answer at all is backed off from.
func TestLBPollRedirectToDeadLeader(t *testing.T) {
	follower, dead := deadLeaderFollower(t)
	f := &lbFollower{client: &http.Client{Timeout: time.Minute}}
	ctx := testenv.Context(t, time.Minute)

	_, err := f.poll(ctx, follower, "", 0)
	if !errors.Is(err, errFollowSoon) {
		t.Fatalf("poll redirected to a dead leader: %v, want errFollowSoon", err)
	}
	_, err = f.poll(ctx, dead, "", 0)
	if err == nil || errors.Is(err, errFollowSoon) {
		t.Fatalf("poll of a dead server: %v, want an error that is not errFollowSoon", err)
	}
}

// An agent's hello sent to a follower that still names a dead leader is
// answered with a 307 to it, and one sent to a server that knows no
// leader with a 503: both say the servers are electing (call again soon),
// while a server that does not answer at all, or refuses, is backed off
// from.
func TestHelloRedirectToDeadLeader(t *testing.T) {
	follower, dead := deadLeaderFollower(t)
	electing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErrorBody(w, http.StatusServiceUnavailable, "no leader known")
	}))
	t.Cleanup(electing.Close)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErrorBody(w, http.StatusForbidden, "forbidden: node removed")
	}))
	t.Cleanup(refusing.Close)
	d := &Agent{client: &http.Client{Timeout: time.Minute}}
	ctx := testenv.Context(t, time.Minute)
	h := api.AgentHello{URL: "https://127.0.0.1:1"}

	for _, u := range []string{follower, electing.URL} {
		if err := d.postHello(ctx, u, h); !errors.Is(err, errFollowSoon) {
			t.Errorf("hello to %s: %v, want errFollowSoon", u, err)
		}
	}
	for _, u := range []string{dead, refusing.URL} {
		if err := d.postHello(ctx, u, h); err == nil || errors.Is(err, errFollowSoon) {
			t.Errorf("hello to %s: %v, want an error that is not errFollowSoon", u, err)
		}
	}
	err := d.postHello(ctx, refusing.URL, h)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "node removed") {
		t.Errorf("refused hello: %v, want the status and the server's message", err)
	}
}

// After a round of the servers failed, a node waits from the least wait
// doubling to the most, and in short steps, without growing, while the
// servers elect a leader, however long it backed off before.
func TestRetryWait(t *testing.T) {
	down := errors.New("connection refused")
	soon := fmt.Errorf("503: %w", errFollowSoon)
	least, most := time.Second, 8*time.Second
	var got []time.Duration
	var w time.Duration
	for _, err := range []error{down, down, down, down, down, soon, soon, down, soon} {
		w = retryWait(w, least, most, err)
		got = append(got, w)
	}
	want := []time.Duration{least, 2 * least, 4 * least, most, most, electionRetry, electionRetry, least, electionRetry}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	// A round in which one server failed with errFollowSoon (joined, as
	// serverList.try returns them) is an election too.
	if w := retryWait(most, least, most, errors.Join(down, soon)); w != electionRetry {
		t.Fatalf("round with a 503 among its errors: wait %s, want %s", w, electionRetry)
	}
}
