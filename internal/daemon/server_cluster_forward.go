package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
)

// Forwarding a follower's admin calls to the leader (adminToLeader).
//
// Every forwarded call is bounded, though a deploy streams for as long
// as its rollout runs: the dial and the TLS handshake each by
// forwardConnectTimeout (a SIGSTOPped leader accepts TCP connections in
// its kernel and never answers the handshake), and the whole call by the
// leader it went to: a watch cancels it as soon as this server knows
// another leader, or none (raft's election timeout after the leader
// stopped answering). A failed forward is sent again, to the new leader,
// when that is safe:
//
//	forward to leader L --ok--> the leader's answer, streamed as it comes
//	      |
//	      | failed (refused, timed out, L deposed) before any answer
//	      v
//	nothing of the body was read, and L never received the call, or the call is
//	idempotent (GET, HEAD, PUT /v1/artifacts/{digest})? --yes--> wait for the new
//	      | no                                                   leader, forward again
//	      v                                                      (forwardAttempts in all)
//	idempotent: 503 with Retry-After (the client sends it again)
//	otherwise:  503 without it: the leader may have acted; the message says the
//	            outcome is unknown and how to see it (shoal status, shoal events)
//
// A call whose answer had begun (a deploy's stream) ends where the
// leader's answer broke: the client follows the deploy from there
// (client.Deploy).

// forwardConnectTimeout bounds the dial to the leader's admin URL and
// the TLS handshake, each.
const forwardConnectTimeout = 10 * time.Second

// forwardAttempts bounds how often one call is forwarded, leaders
// changing between the attempts.
const forwardAttempts = 3

// leaderWatchEvery is how often a forwarded call checks that the leader
// it went to still leads, as this server knows.
const leaderWatchEvery = 250 * time.Millisecond

// newLeaderWait bounds how long a failed forward waits for this server
// to know a new leader before it answers 503.
const newLeaderWait = 30 * time.Second

// newForwardTransport is the transport of the calls a server makes to
// its peers' admin APIs (forwards to the leader, artifact copies): TLS
// with the fleet CA as root, connecting bounded by forwardConnectTimeout.
func newForwardTransport(cliTLS *tls.Config) *http.Transport {
	d := &net.Dialer{Timeout: forwardConnectTimeout, KeepAlive: 15 * time.Second}
	return &http.Transport{TLSClientConfig: cliTLS, DialContext: d.DialContext, TLSHandshakeTimeout: forwardConnectTimeout,
		MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
}

// LeaderChangedError ends a forwarded call whose leader this server no
// longer knows as the leader.
type LeaderChangedError struct {
	From, To string // To is empty while no leader is known
}

func (e *LeaderChangedError) Error() string {
	if e.To == "" {
		return fmt.Sprintf("the leader %s stopped leading (an election is under way)", e.From)
	}
	return fmt.Sprintf("the lead moved from %s to %s", e.From, e.To)
}

// adminToLeader serves next on the leader once its apps started (a read
// once the leader confirmed its lead: confirmRead); a
// follower forwards the call to the leader's admin API (the same token
// works there: the cluster shares it; see the top of this file), and
// answers 503 when no leader is known, when the leader is still starting
// its apps, or for a call that was forwarded to it already. The
// cluster's own reads (GET /v1/servers, /v1/cluster/) are always served
// here.
func (s *Server) adminToLeader(next http.Handler) http.Handler {
	if s.cl == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := r.Method == http.MethodGet && r.URL.Path == "/v1/servers" || strings.HasPrefix(r.URL.Path, "/v1/cluster/")
		if local {
			next.ServeHTTP(w, r)
			return
		}
		if term := s.cl.readyTerm.Load(); term != 0 {
			if s.cl.confirmRead(w, r, term) {
				next.ServeHTTP(w, r)
			}
			return
		}
		m, ok := s.cl.leaderElse503(w, r.Header.Get(forwardedHeader) != "")
		if !ok {
			return
		}
		s.forward(w, r, m)
	})
}

// forward sends r to the leader m, and again to a new leader while that
// is safe (see the top of this file), and answers with the leader's
// answer or a named error.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, m api.ClusterMember) {
	idempotent := idempotentCall(r)
	bodiless := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	for attempt := 1; ; attempt++ {
		reached, err := s.forwardOnce(w, r, m)
		if err == nil {
			return
		}
		// A body is read only after the headers were sent: one the
		// leader never received is still whole here.
		retry := (!reached || bodiless && idempotent) && attempt < forwardAttempts && r.Context().Err() == nil
		s.log.Warn("forward to the leader failed", "method", r.Method, "path", r.URL.Path, "leader", m.ID,
			"attempt", attempt, "again", retry, "error", err)
		if retry {
			next, werr := s.cl.waitNewLeader(r.Context(), m.ID)
			if werr == nil {
				m = next
				continue
			}
			err = fmt.Errorf("%w; then %w", err, werr)
		}
		err = fmt.Errorf("%w: forward %s %s to the leader %s at %s: %w", adminapi.ErrUnavailable, r.Method, r.URL.Path, m.ID, m.AdminURL, err)
		if idempotent || !reached {
			// Nothing was done, or doing it again does no harm.
			writeClusterError(w, err)
			return
		}
		adminapi.WriteError(w, adminapi.WithStatus(adminapi.ErrOutcomeUnknown,
			fmt.Errorf("%w; the leader may have received the call before it stopped answering, so its outcome is unknown: see shoal status and shoal events", err)))
		return
	}
}

// forwardOnce forwards r to the leader m. It returns nil once the
// leader's answer was relayed (or began to be: a broken stream ends the
// answer where it broke); else why it failed, nothing written to w, and
// whether the leader may have received the call (its headers were sent).
func (s *Server) forwardOnce(w http.ResponseWriter, r *http.Request, m api.ClusterMember) (reached bool, err error) {
	target, err := url.Parse(m.AdminURL)
	if err != nil {
		return false, fmt.Errorf("leader %s's admin url %q: %w", m.ID, m.AdminURL, err)
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := s.cl.watchLeader(ctx, m.ID, cancel)
	defer stop()
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	var failed error
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			pr.Out.Header.Set(forwardedHeader, s.cl.node.ID())
		},
		Transport:     s.cl.proxy,
		FlushInterval: -1, // deploy progress streams line by line
		ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				err = cause // the leader changed: say so rather than "context canceled"
			}
			failed = err
		},
	}
	out := r.WithContext(ctx)
	if r.Body != nil {
		// The proxy closes the body it sent; a later attempt sends it
		// again (the server closes it when the handler returns).
		out.Body = io.NopCloser(r.Body)
	}
	p.ServeHTTP(w, out)
	return wrote.Load(), failed
}

// watchLeader cancels a forwarded call, with a *LeaderChangedError, as
// soon as this server knows another leader than id, or none. stop ends
// the watch and returns once it ended.
func (c *clusterState) watchLeader(ctx context.Context, id string, cancel context.CancelCauseFunc) (stop func()) {
	ctx, end := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // owned: stop waits for done
		defer close(done)
		t := time.NewTicker(leaderWatchEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if now, _ := c.node.Leader(); now != id {
				cancel(&LeaderChangedError{From: id, To: now})
				return
			}
		}
	}()
	return func() {
		end()
		<-done
	}
}

// waitNewLeader waits, up to newLeaderWait, until this server knows a
// leader other than old whose admin URL is recorded, and returns it; an
// error naming the wait when none comes, or this server leads itself
// (its own handlers then answer the client's next call).
func (c *clusterState) waitNewLeader(ctx context.Context, old string) (api.ClusterMember, error) {
	ctx, cancel := context.WithTimeout(ctx, newLeaderWait)
	defer cancel()
	t := time.NewTicker(leaderWatchEvery)
	defer t.Stop()
	for {
		if c.node.IsLeader() {
			return api.ClusterMember{}, errors.New("this server now leads the cluster: send the call again")
		}
		if m, err := c.leaderMember(); err == nil && m.ID != old {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return api.ClusterMember{}, fmt.Errorf("no new leader known after %s: %w", newLeaderWait, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// idempotentCall reports whether sending r twice does what sending it
// once does: reads, and an artifact's upload (stored by its digest).
func idempotentCall(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	case http.MethodPut:
		return strings.HasPrefix(r.URL.Path, "/v1/artifacts/")
	}
	return false
}
