package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/cluster"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestClusterWriteRefusals: a write that a server of three real ones
// refuses because it does not lead is answered 503 with Retry-After (it
// did nothing; the client sends it again), and one whose outcome is
// unknown (cluster.ErrUnknownOutcome: its wait ended, or the lead was
// lost after it was proposed) 503 with Shoal-Outcome: unknown and no
// Retry-After; neither a 500. Both go through the server's own writer
// (Server.w) and adminapi's handler, as a controller's writes do.
func TestClusterWriteRefusals(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	servers := startClusterServers(t, ctx)
	call := func(w store.Writer) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h := adminapi.Handle(func(http.ResponseWriter, *http.Request) error {
			_, err := w.AppendEvent("web", api.Event{Type: "test", Reason: "a write of the test"})
			return err
		})
		h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/test", nil))
		return rec
	}
	// An election on a loaded machine may make the server asked the
	// leader (or not) between the choice and the write: ask again then.
	if err := testenv.WaitFor(ctx, func() error {
		for _, ts := range servers {
			if ts.s.cl.node.IsLeader() {
				continue
			}
			rec := call(ts.s.w)
			if rec.Code == http.StatusOK {
				return fmt.Errorf("%s took the lead", ts.s.cl.node.ID())
			}
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
				rec.Header().Get(api.OutcomeHeader) != "" || !strings.Contains(rec.Body.String(), "not the cluster's leader") {
				t.Fatalf("a write on follower %s: %d %q (Retry-After %q, %s %q); want 503 with Retry-After: 1 and no %[5]s",
					ts.s.cl.node.ID(), rec.Code, rec.Body, rec.Header().Get("Retry-After"), api.OutcomeHeader, rec.Header().Get(api.OutcomeHeader))
			}
			return nil
		}
		return errors.New("no follower")
	}); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, func() error {
		for _, ts := range servers {
			if !ts.s.cl.node.IsLeader() {
				continue
			}
			// A write whose wait ends before its outcome is known.
			rec := call(clusterWriter{cluster.Writer{Node: ts.s.cl.node, Timeout: time.Nanosecond}})
			if rec.Code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") != "" {
				return fmt.Errorf("%s lost the lead: %s", ts.s.cl.node.ID(), rec.Body)
			}
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get(api.OutcomeHeader) != api.OutcomeUnknown ||
				!strings.Contains(rec.Body.String(), "outcome unknown") {
				t.Fatalf("a write of unknown outcome on the leader %s: %d %q (%s %q); want 503 with %[3]s: %[5]s and no Retry-After",
					ts.s.cl.node.ID(), rec.Code, rec.Body, api.OutcomeHeader, api.OutcomeUnknown)
			}
			return nil
		}
		return errors.New("no leader")
	}); err != nil {
		t.Fatal(err)
	}
}
