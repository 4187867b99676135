package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/cluster"
	"github.com/shoal-dev/shoal/internal/pki"
)

// `shoal server` as one server of a Raft cluster (issue 14, server.yaml's
// cluster section). The store is a replica that only the cluster's log
// writes (cluster.Node); every write of the server and its controllers
// goes through cluster.Writer (Server.w). What acts runs on the leader
// only, from Node.WhileLeader (lead): the fleet's registry (a new one
// each term, from the replicated hosts, its calls to the agents carrying
// raft's term, which the agents fence on), the host pools, ACME, and
// every app's controller (reopened from the replicated state; they adopt
// what the agents run). When leadership is lost they stop, leaving every
// instance running, and the balancer keeps its last targets.
//
//	follower --wins election--> lead: record admin/fleet URLs, fleet, pools, apps --> ready (apps adopted)
//	   ^                                                                                |
//	   +------------------ leadership lost: apps stop (instances left running) <--------+
//
// A follower forwards every admin call (but the cluster's own,
// /v1/servers and /v1/cluster/) to the leader's admin URL, which the
// leader records in the store (store.PutMember) when it starts leading,
// and answers agents and balancer nodes on its fleet listener with a 307
// to the leader's fleet URL. With no leader known, both are 503.

// forwardedHeader marks an admin call a follower forwarded, so that a
// server that does not lead either answers 503 instead of forwarding it
// again.
const forwardedHeader = "Shoal-Forwarded-By"

// clusterState is the server's part of a cluster.
type clusterState struct {
	node *cluster.Node
	w    cluster.Writer
	// readyTerm is the term this server leads in while its apps have
	// started that term; 0 otherwise (raft's terms begin at 1).
	readyTerm atomic.Uint64
	// proxy forwards admin calls to the leader's admin URL and carries
	// the calls between peers (newForwardTransport).
	proxy *http.Transport
	// arts is the copying of artifacts between the servers
	// (server_cluster_artifacts.go).
	arts peerArtifacts
}

// openCluster opens the cluster node of server.yaml's cluster section,
// if any: its raft listener (cluster.listen), its TLS from the fleet CA,
// and the store as its replica. Writes go through the cluster from here
// on.
func (s *Server) openCluster() error {
	c := s.cfg.Cluster
	if c == nil {
		return nil
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("raft listener (cluster.listen %s): %w", c.Listen, err)
	}
	adv := c.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	host, _, _ := net.SplitHostPort(adv)
	srvTLS, err := pki.ServerTLSConfig(s.ca, []string{host})
	if err != nil {
		ln.Close()
		return fmt.Errorf("raft listener certificate: %w", err)
	}
	cliTLS, err := pki.ServerClientTLSConfig(s.ca)
	if err != nil {
		ln.Close()
		return fmt.Errorf("raft client certificate: %w", err)
	}
	node, err := cluster.Open(cluster.Config{ID: c.ID, Advertise: adv, Listener: ln, DataDir: s.cfg.DataDir,
		Store: s.st, ServerTLS: srvTLS, ClientTLS: cliTLS, Bootstrap: c.Bootstrap,
		HeartbeatTimeout: c.ElectionTimeout.D(), ElectionTimeout: c.ElectionTimeout.D(), LeaderLeaseTimeout: c.ElectionTimeout.D() / 2,
		Logger: s.log.With("part", "cluster")})
	if err != nil {
		return err
	}
	s.onRelease(func(context.Context) { node.Close() })
	s.cl = &clusterState{node: node, w: cluster.Writer{Node: node},
		proxy: newForwardTransport(cliTLS)}
	s.onRelease(func(context.Context) { s.cl.proxy.CloseIdleConnections() })
	s.w = clusterWriter{s.cl.w}
	s.log.Info("cluster node open", "server", c.ID, "raft", adv, "bootstrap", c.Bootstrap)
	return nil
}

// run runs lead each time this server leads, until ctx ends.
func (c *clusterState) run(ctx context.Context, lead func(ctx context.Context, term uint64)) error {
	if err := c.node.WhileLeader(ctx, lead); err != nil && !errors.Is(err, cluster.ErrClosed) {
		return err
	}
	return nil
}

// gate is nil while this server leads with its apps started; else why
// the fleet listener's calls go elsewhere.
func (c *clusterState) gate() error {
	if c.ready() {
		return nil
	}
	if c.node.IsLeader() {
		return errors.New("this server leads the cluster but its apps are still starting; try again")
	}
	return errors.New("this server does not lead the cluster")
}

// ready reports whether this server leads with its apps started.
func (c *clusterState) ready() bool { return c.readyTerm.Load() != 0 }

// lead is what the leader runs for one term, until ctx ends (leadership
// lost, or the server stops): see the comment at the top of this file.
func (s *Server) lead(ctx context.Context, term uint64) {
	log := s.log.With("term", term)
	me := api.ClusterMember{ID: s.cl.node.ID(), AdminURL: s.AdminURL(), FleetURL: s.fleetURL}
	for {
		err := s.cl.w.PutMember(me)
		if err == nil {
			break
		}
		log.Warn("record this leader's URLs", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	if err := s.nodes.reload(s.st.Tokens()); err != nil {
		log.Warn("the join server's allow-list keeps the tokens read before", "error", err)
	}
	// From the term's start, a drain waits for the balancer nodes that
	// joined the fleet, not only for those that called this leader: a
	// node still reconnecting after a failover is one of them.
	if names, err := s.storedLBNodes(); err != nil {
		log.Warn("balancer nodes not expected: a drain waits only for those that call", "error", err)
	} else {
		s.lbs.expectAfresh(names)
	}
	f, err := s.newFleet(func() uint64 { return term })
	if err != nil {
		log.Error("leading without a fleet: its registry cannot be made", "error", err)
		<-ctx.Done()
		return
	}
	fleetCtx, stopFleet := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopFleet() // after the controllers: the fleet delivers their exits until then
	s.fleetp.Store(f)
	defer s.fleetp.Store(nil)
	wg.Go(func() { f.Run(fleetCtx) })
	for _, p := range s.pools {
		wg.Go(func() { p.Run(ctx) })
	}
	if s.acme != nil {
		wg.Go(func() { s.acme.Run(ctx) })
		if s.cfg.Balancer.ACME.FromRoutes() {
			wg.Go(func() { s.followRouteHosts(ctx) })
		}
	}
	if err := s.openStoredApps(); err != nil {
		log.Error("apps not opened", "error", err)
	}
	n := s.startApps(ctx)
	defer s.closeApps()
	defer s.stopApps() // apps.go: leaves their instances running
	if !s.appsStarted(ctx) {
		return
	}
	s.lbs.newEpoch() // balancer nodes take this leader's whole configuration
	s.cl.readyTerm.Store(term)
	defer s.cl.readyTerm.Store(0)
	log.Info("leading the cluster: apps started", "server", me.ID, "apps", n)
	<-ctx.Done()
	log.Info("no longer leading: stopping the apps, leaving their instances running", "server", me.ID)
}

// closeApps forgets the apps of a term that ended (their controllers
// stopped): their pools and routes leave the server's own balancer, and
// the next term opens them again from the replica. Balancer nodes are not
// told: the stream's gate refuses them before the apps stop.
func (s *Server) closeApps() {
	s.appsMu.Lock()
	defer s.appsMu.Unlock()
	names := make([]string, 0, len(s.apps))
	for name := range s.apps {
		names = append(names, name)
		delete(s.apps, name)
	}
	if err := s.setRoutesLocked(); err != nil {
		s.log.Warn("routes of the apps of the ended term not removed", "error", err)
	}
	for _, name := range names {
		if err := s.bal.RemovePool(name); err != nil {
			s.log.Warn("pool of an app of the ended term not removed", "app", name, "error", err)
		}
	}
}

// appsStarted waits until every app's controller is ready (it adopted what
// the agents run) or ended; false when ctx ends first.
func (s *Server) appsStarted(ctx context.Context) bool {
	s.appsMu.Lock()
	apps := s.sortedAppsLocked()
	s.appsMu.Unlock()
	for _, a := range apps {
		select {
		case <-a.ctl.Ready():
		case <-a.done:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// leaderMember returns where the leader serves; an error wrapping
// adminapi.ErrUnavailable when no leader is known or its URLs are not
// in this replica yet.
func (c *clusterState) leaderMember() (api.ClusterMember, error) {
	id, _ := c.node.Leader()
	if id == "" {
		return api.ClusterMember{}, fmt.Errorf("%w: the cluster has no leader now (an election is under way); try again", adminapi.ErrUnavailable)
	}
	m, ok, err := c.node.Store().Member(id)
	if err != nil {
		return api.ClusterMember{}, err
	}
	if !ok || m.AdminURL == "" {
		return api.ClusterMember{}, fmt.Errorf("%w: the leader %s has not recorded its URLs yet; try again", adminapi.ErrUnavailable, id)
	}
	return m, nil
}

// leaderElse503 returns where the leader serves, for a call this server
// does not serve itself; or it answers 503 (false): when this server leads
// but has not started its apps, when the call was forwarded here already
// (forwarded: no loops), or when no leader is known.
func (c *clusterState) leaderElse503(w http.ResponseWriter, forwarded bool) (api.ClusterMember, bool) {
	if c.node.IsLeader() || forwarded {
		writeClusterError(w, fmt.Errorf("%w: %w", adminapi.ErrUnavailable, c.gate()))
		return api.ClusterMember{}, false
	}
	m, err := c.leaderMember()
	if err != nil {
		writeClusterError(w, err)
		return api.ClusterMember{}, false
	}
	return m, true
}

// writeClusterError answers err; a 503 (adminapi.ErrUnavailable: no
// leader yet, or one starting) carries Retry-After: 1, which tells the
// client (package client) that nothing was done and it may ask again.
func writeClusterError(w http.ResponseWriter, err error) {
	if errors.Is(err, adminapi.ErrUnavailable) {
		w.Header().Set("Retry-After", "1")
	}
	adminapi.WriteError(w, err)
}

// fleetToLeader serves next on the leader, also while its apps start; a
// follower answers agents and balancer nodes with a 307 to the same path
// at the leader's fleet URL (their clients follow it with their own
// certificates), or 503 with no leader known. The leader's own handlers
// refuse what needs the term's apps or fleet: a balancer node's
// configuration (lbStream.gate) and an agent's hello before the fleet
// exists. The rest must be served while the apps start: a controller that
// adopts fewer instances than desired launches before it is ready, and
// an agent without the release's artifact fetches it here (a 503 then
// held the launch, and so the apps' start, forever).
func (s *Server) fleetToLeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cl == nil || s.cl.ready() || s.cl.node.IsLeader() {
			next.ServeHTTP(w, r)
			return
		}
		m, ok := s.cl.leaderElse503(w, false)
		if !ok {
			return
		}
		u := m.FleetURL + r.URL.Path
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, u, http.StatusTemporaryRedirect)
	})
}
