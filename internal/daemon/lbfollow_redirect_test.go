package daemon

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// A follower that still names a dead leader answers a node's poll with a
// 307 to it; the failed redirect is the election under way (call again
// soon), while a server that does not answer at all is backed off from.
func TestLBPollRedirectToDeadLeader(t *testing.T) {
	dead := "http://" + testenv.FreeAddr(t)
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, dead+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(follower.Close)
	f := &lbFollower{client: &http.Client{Timeout: time.Minute}}
	ctx := testenv.Context(t, time.Minute)

	_, err := f.poll(ctx, follower.URL, "", 0)
	if !errors.Is(err, errFollowSoon) {
		t.Fatalf("poll redirected to a dead leader: %v, want errFollowSoon", err)
	}
	_, err = f.poll(ctx, dead, "", 0)
	if err == nil || errors.Is(err, errFollowSoon) {
		t.Fatalf("poll of a dead server: %v, want an error that is not errFollowSoon", err)
	}
}
