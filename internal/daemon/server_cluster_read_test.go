package daemon

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestLeaderConfirmsBeforeReads: the leader of three real servers
// serves an admin read once it confirmed its lead in the term its apps
// started in. Its apps of another term (as a deposed leader's, elected
// again before its old term's apps stopped) make a read a 503 with
// Retry-After, nothing served, unless the read asks for ?stale; a write
// goes on to its handler (raft fences it).
func TestLeaderConfirmsBeforeReads(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	servers := startClusterServers(t, ctx)
	served := 0
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served++ })
	call := func(ts *testServer, method, target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		ts.s.adminToLeader(inner).ServeHTTP(rec, httptest.NewRequestWithContext(ctx, method, target, nil))
		return rec
	}
	var lead *testServer
	if err := testenv.WaitFor(ctx, func() error {
		for _, ts := range servers {
			if ts.s.cl.ready() {
				lead = ts
				// An election on a loaded machine: ask whoever leads then.
				if rec := call(ts, http.MethodGet, "/v1/status"); rec.Code != http.StatusOK || served != 1 {
					served = 0
					return errors.New("the leader's read was refused: " + rec.Body.String())
				}
				return nil
			}
		}
		return errors.New("no leader with its apps started")
	}); err != nil {
		t.Fatal(err)
	}
	term := lead.s.cl.readyTerm.Load()
	lead.s.cl.readyTerm.Store(term + 1)
	defer lead.s.cl.readyTerm.CompareAndSwap(term+1, term)
	rec := call(lead, http.MethodGet, "/v1/status")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
		!strings.Contains(rec.Body.String(), "could not confirm that it still leads") || served != 1 {
		t.Fatalf("a read in a term the leader does not lead in: %d %q (Retry-After %q), handler ran %d times; want a 503 with Retry-After, not served",
			rec.Code, rec.Body, rec.Header().Get("Retry-After"), served)
	}
	if rec := call(lead, http.MethodGet, "/v1/status?stale"); rec.Code != http.StatusOK || served != 2 {
		t.Fatalf("a stale read: %d %q, handler ran %d times; want it served", rec.Code, rec.Body, served)
	}
	if rec := call(lead, http.MethodPost, "/v1/scale"); rec.Code != http.StatusOK || served != 3 {
		t.Fatalf("a write: %d %q, handler ran %d times; want it passed on", rec.Code, rec.Body, served)
	}
}
