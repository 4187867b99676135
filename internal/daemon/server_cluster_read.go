package daemon

import (
	"fmt"
	"net/http"

	"github.com/shoal-dev/shoal/internal/adminapi"
)

// Linearizable reads. The leader answers the admin API's reads (GET /v1/status,
// /v1/env, /v1/releases...) from its controllers and its replica. A
// leader cut off from the others keeps believing it leads until its
// lease runs out, while the others elect a leader and take writes: its
// answers then miss acknowledged writes. So before a read it confirms,
// in the term its apps started in, that a majority still follows it
// (cluster.Node.VerifyLeader: one round of heartbeats, shared by the
// reads that arrive together); a read it cannot confirm is answered 503
// with Retry-After, nothing done, and the client asks again (by then
// this server forwards to the new leader). A read with the query
// parameter stale (GET /v1/status?stale) skips the confirmation: it is
// answered at once from this leader's state, which may be stale by the
// writes of a leader elected meanwhile, as Consul's ?stale.

// staleParam is the query parameter that opts a read out of the
// leader's confirmation.
const staleParam = "stale"

// confirmRead reports whether r may be served from this server's state,
// led in term: yes for a write (raft refuses it on a deposed leader),
// for a read that asks for stale, and for a read once the lead is
// confirmed; else it answered r.
func (c *clusterState) confirmRead(w http.ResponseWriter, r *http.Request, term uint64) bool {
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if !read || r.URL.Query().Has(staleParam) {
		return true
	}
	if err := c.node.VerifyLeader(r.Context(), term); err != nil {
		writeClusterError(w, fmt.Errorf("%w: this server could not confirm that it still leads the cluster, so it does not answer from its state: %w; try again", adminapi.ErrUnavailable, err))
		return false
	}
	return true
}
