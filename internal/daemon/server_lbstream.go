package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
)

// The balancer configuration that balancer nodes follow (issue 13): GET
// /v1/lb/config on the fleet port, for nodes of role lb. The server's own
// balancer is the source of truth: its routes (set per app), its pools
// (one per app, with the app's settings and sticky key) and their members
// (which the controllers add, drain and remove). lbStream watches it
// through lb.Balancer.Changed, the one change notification (every pool
// reports its changes to it), derives the whole configuration again
// (lbConfigOf), and numbers the differences from the previous one
// (diffLBConfig) as changes, keeping the last lbStreamKeep of them.
//
// Long poll, not a streaming answer: each answer is one whole JSON
// document that the node applies at once or not at all, the resume point
// is in every request (epoch and version), so a reconnect is the ordinary
// next call and a proxy or a lost connection can never leave half a
// change applied; a change reaches a waiting node one round trip after it
// happened (the agents' exits follow the same pattern). A node that is
// behind by more than the kept changes, or that last saw another run of
// the server (a different epoch), gets a snapshot.

const (
	// lbStreamKeep is how many changes the server keeps for nodes that
	// come back; one further behind gets a snapshot.
	lbStreamKeep = 1024
	// lbPollWait is how long a call waits for a change before it answers
	// with none; below the node's own request timeout.
	lbPollWait = 25 * time.Second
	// lbStreamResync is how often the stream derives the configuration
	// without a notification: the balancer notifies its own changes, but
	// an app's health check comes from the release it serves, which
	// changes without one (a deploy that changes only the check).
	lbStreamResync = 2 * time.Second
	// lbGateEvery is how often a waiting call checks that the server
	// may still answer (gate).
	lbGateEvery = time.Second
)

// lbStream is the server's side of the followed configuration.
type lbStream struct {
	bal   *lb.Balancer
	check func(pool string) *health.Spec
	log   *slog.Logger
	// gate, when set, refuses the calls it returns an error for (a
	// cluster's server that does not lead, or whose apps have not started
	// yet: server_cluster.go); a waiting call checks it again before it
	// answers.
	gate  func() error
	epoch string

	// syncMu makes each derive-and-update one step, so that sync from
	// another goroutine (publishing a challenge) never records an older
	// reading after a newer one.
	syncMu sync.Mutex

	mu      sync.Mutex
	cur     api.LBConfig
	version uint64
	kept    []api.LBChange // the last changes, oldest first, at most lbStreamKeep
	wake    chan struct{}  // closed and replaced at each new version
	done    chan struct{}  // closed when run ends: waiting calls answer
	// opened is closed by open, once the apps opened at the server's
	// start serve: before that the pools lack the instances the
	// controllers are adopting, and a node given them would drop its
	// targets. Calls wait for it (the nodes serve their last
	// configuration meanwhile).
	opened   chan struct{}
	openOnce sync.Once
	// nodes is where each node (by its certificate's name) stands: the
	// version of this epoch it asked the changes after, which it has
	// applied. acked is closed and replaced when one moves.
	nodes map[string]nodeMark
	acked chan struct{}
}

// nodeMark is a node's last call.
type nodeMark struct {
	after  uint64
	at     time.Time
	addr   string // the call's remote address (its host part)
	called bool   // false for a node expected (expect) that has not called
}

// lbNodeGone is how long after its last call a node no longer counts as
// following (a waiting call is renewed every lbPollWait at the latest).
const lbNodeGone = lbPollWait + 15*time.Second

// newLBStream returns the stream of bal's configuration, with check
// giving each pool's active health check for the nodes.
func newLBStream(bal *lb.Balancer, check func(pool string) *health.Spec, log *slog.Logger) *lbStream {
	var b [8]byte
	rand.Read(b[:])
	s := &lbStream{bal: bal, check: check, log: log, epoch: hex.EncodeToString(b[:]),
		wake: make(chan struct{}), done: make(chan struct{}), opened: make(chan struct{}),
		nodes: map[string]nodeMark{}, acked: make(chan struct{})}
	s.cur = s.derive()
	return s
}

// newEpoch starts a new run of the stream: every node gets a snapshot at
// its next call (a cluster's new leader, whose pools are its own).
func (s *lbStream) newEpoch() {
	var b [8]byte
	rand.Read(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch = hex.EncodeToString(b[:])
}

// derive reads the balancer's configuration now.
func (s *lbStream) derive() api.LBConfig {
	c := lbConfigOf(s.bal.Config(), func(name string) []pool.TargetStatus {
		p, ok := s.bal.Pool(name)
		if !ok {
			return nil
		}
		return p.Status().Targets
	}, s.check)
	c.Certificates = lbCertsOf(s.bal.Certificates())
	c.Challenges = lbChallengesOf(s.bal.Challenges())
	return c
}

// run follows the balancer's changes until ctx ends; then every waiting
// call answers.
func (s *lbStream) run(ctx context.Context) error {
	defer close(s.done)
	tick := time.NewTicker(lbStreamResync)
	defer tick.Stop()
	for {
		// Ask for the next notification before reading, so that a change
		// made while reading wakes the next round.
		ch := s.bal.Changed()
		s.sync()
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-tick.C:
		}
	}
}

// sync derives the configuration now, records its changes and returns
// the version that holds them.
func (s *lbStream) sync() uint64 {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.update(s.derive())
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// open lets the calls be answered (see opened), with the configuration
// derived now: run's last reading may predate the targets the controllers
// added just before (their notification not yet read). Idempotent.
func (s *lbStream) open() {
	s.openOnce.Do(func() {
		s.sync()
		close(s.opened)
	})
}

// mark records that node asked for the changes after version after of
// epoch: it has applied everything up to it.
func (s *lbStream) mark(node, epoch, addr string, after uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch {
		after = 0
	}
	s.nodes[node] = nodeMark{after: after, at: time.Now(), addr: addr, called: true}
	close(s.acked)
	s.acked = make(chan struct{})
}

// expect counts the named nodes as following from now, at version 0,
// until they call or lbNodeGone passes: the balancer nodes that joined
// before this run reconnect within their backoff (5 s), and a challenge
// published meanwhile must wait for them (delivered).
func (s *lbStream) expect(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if _, ok := s.nodes[n]; !ok {
			s.nodes[n] = nodeMark{at: time.Now()}
		}
	}
}

// expectAfresh starts a term of a cluster's leader (server_cluster.go):
// from now, every node this stream knew and the named ones count as
// expected, at version 0, until they call (in the epoch newEpoch starts
// next) or lbNodeGone passes. A mark of an earlier term of this server
// says nothing of what a node applied since, and a node still
// reconnecting after a failover must be waited for by a drain
// (delivered, bounded by the drain timeout) as much as one that called.
func (s *lbStream) expectAfresh(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for n := range s.nodes {
		s.nodes[n] = nodeMark{at: now}
	}
	for _, n := range names {
		s.nodes[n] = nodeMark{at: now}
	}
}

// hosts returns the balancer nodes that called in this run of the
// server or are expected (expect), sorted by name, as `shoal hosts` shows
// them (api.BalancerNodeStatus says what their states mean).
func (s *lbStream) hosts() []api.HostStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.HostStatus, 0, len(s.nodes))
	for name, m := range s.nodes {
		h := api.HostStatus{Name: name, Role: api.RoleLB, State: api.HostReady,
			Balancer: &api.BalancerNodeStatus{Addr: m.addr, Applied: m.after, ServerVersion: s.version}}
		switch since := time.Since(m.at); {
		case !m.called:
			h.State, h.Reason = api.HostJoining, "joined before this run of the server; no call yet"
		case since >= lbNodeGone:
			h.LastHeartbeat = m.at
			h.State, h.Reason = api.HostUnreachable, fmt.Sprintf("no call for %s", since.Round(time.Second))
		default:
			h.LastHeartbeat = m.at
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b api.HostStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// delivered waits until every node that followed within lbNodeGone has
// applied version v (asked for the changes after it), or ctx ends: then
// the error names the nodes behind.
func (s *lbStream) delivered(ctx context.Context, v uint64) error {
	for {
		s.mu.Lock()
		var behind []string
		for name, m := range s.nodes {
			if m.after < v && time.Since(m.at) < lbNodeGone {
				behind = append(behind, name)
			}
		}
		wait := s.acked
		s.mu.Unlock()
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			slices.Sort(behind)
			return fmt.Errorf("balancer nodes %s have not applied version %d: %w", strings.Join(behind, ", "), v, context.Cause(ctx))
		case <-time.After(time.Second): // a node that stopped calling ages out
		}
	}
}

// awaitDrain is each controller's Options.AwaitDrain (drain before stop
// through the balancer nodes): called once the app's pool drains addr, it
// reads the configuration now, in which addr drains or is gone, and waits
// until every following node has applied it (delivered). A node asks
// again only once the targets an answer drained are idle on it
// (nodeDrains), so then no node sends addr a request any more, nor has
// one in flight to it. A node with no call for lbNodeGone holds nothing;
// ctx (the drain timeout) bounds the rest.
func (s *lbStream) awaitDrain(ctx context.Context, addr string) error {
	v := s.sync()
	if err := s.delivered(ctx, v); err != nil {
		return fmt.Errorf("drain of %s: %w", addr, err)
	}
	return nil
}

// update records the changes from the current configuration to next.
func (s *lbStream) update(next api.LBConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changes := diffLBConfig(s.cur, next)
	if len(changes) == 0 {
		return
	}
	for i := range changes {
		s.version++
		changes[i].Version = s.version
	}
	s.kept = append(s.kept, changes...)
	if n := len(s.kept) - lbStreamKeep; n > 0 {
		s.kept = append([]api.LBChange(nil), s.kept[n:]...)
	}
	s.cur = next
	close(s.wake)
	s.wake = make(chan struct{})
	s.log.Debug("balancer configuration changed", "version", s.version, "changes", len(changes))
}

// page answers a node at (epoch, after): the changes after it, or a
// snapshot, or (ok false) nothing yet, with the channel closed at the next
// version.
func (s *lbStream) page(epoch string, after uint64) (api.LBConfigPage, <-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := api.LBConfigPage{Epoch: s.epoch, Version: s.version}
	switch {
	case epoch != s.epoch || after > s.version || (len(s.kept) > 0 && after+1 < s.kept[0].Version) ||
		(len(s.kept) == 0 && after != s.version):
		snap := s.cur
		p.Snapshot = &snap
		return p, nil, true
	case after == s.version:
		return p, s.wake, false
	}
	first := len(s.kept) - int(s.version-after)
	p.Changes = append([]api.LBChange(nil), s.kept[first:]...)
	return p, nil, true
}

// serveHTTP is GET /v1/lb/config?epoch=E&after=V (pki.RequireNode lets
// only nodes of role lb in). Without epoch, or with another, the answer is
// a snapshot; with the latest version it waits up to lbPollWait for a
// change (or the server's stop) and then answers with none.
func (s *lbStream) serveHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeErrorBody(w, http.StatusBadRequest, fmt.Sprintf("after=%q: want a version number", v))
			return
		}
		after = n
	}
	select {
	case <-s.opened:
	case <-s.done:
		writeErrorBody(w, http.StatusServiceUnavailable, "the server is stopping")
		return
	case <-r.Context().Done():
		return
	}
	epoch := q.Get("epoch")
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		addr := r.RemoteAddr
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
		s.mark(r.TLS.PeerCertificates[0].Subject.CommonName, epoch, addr, after)
	}
	closed := func() bool {
		if s.gate == nil {
			return false
		}
		if err := s.gate(); err != nil {
			writeErrorBody(w, http.StatusServiceUnavailable, err.Error())
			return true
		}
		return false
	}
	if closed() {
		return
	}
	p, wait, ok := s.page(epoch, after)
	if !ok {
		t := time.NewTimer(lbPollWait)
		defer t.Stop()
		// A server that stops leading while a node waits (cut off from
		// its peers, issue 14) answers 503 within lbGateEvery, and the
		// node moves to the next server, rather than holding it for the
		// rest of lbPollWait.
		gate := time.NewTicker(lbGateEvery)
		defer gate.Stop()
	waiting:
		for {
			select {
			case <-wait:
				p, _, _ = s.page(epoch, after)
				break waiting
			case <-t.C:
				break waiting
			case <-s.done:
				break waiting
			case <-gate.C:
				if closed() {
					return
				}
			case <-r.Context().Done():
				return
			}
		}
		if closed() {
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(p); err != nil {
		s.log.Debug("write balancer configuration", "error", err)
	}
}

// lbChecks gives each app's pool the active health check of the app's
// serving release, for the balancer nodes, which check the instances
// themselves (the server's own pools have none: the controllers check
// their instances). It parses a release's configuration once.
type lbChecks struct {
	s  *Server
	mu sync.Mutex
	by map[string]lbCheck
}

type lbCheck struct {
	release int
	spec    *health.Spec
}

// check returns the health check of app's serving release; nil for no app
// or no release yet (the node then trusts the server's verdicts).
func (c *lbChecks) check(app string) *health.Spec {
	a, ok := c.s.app(app)
	if !ok {
		return nil
	}
	rel := a.ctl.Release()
	if rel.Version == 0 || rel.Config == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.by[app]; ok && k.release == rel.Version {
		return k.spec
	}
	cfg, err := config.ParseSent(rel.ConfigFile, []byte(rel.Config))
	if err != nil {
		c.s.log.Warn("balancer nodes get no health check: the release's configuration is invalid", "app", app, "release", rel.Version, "error", err)
		return nil
	}
	spec := cfg.Health.Spec().WithDefaults()
	if c.by == nil {
		c.by = map[string]lbCheck{}
	}
	c.by[app] = lbCheck{release: rel.Version, spec: &spec}
	return &spec
}
