package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/cluster"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/store"
)

// The servers. With -servers 1 the one replica is a store.Store that the
// fleet and the controllers write at once, as one `shoal server` does.
// With -servers N > 1 each replica is a cluster.Node (hashicorp/raft over
// mutual TLS on its own 127.0.0.1 listener, raft-boltdb log) with its own
// store and data dir under dir/servers/sN; s0 bootstraps and adds the
// others as voters. Every write of the leader's fleet (host records) and
// controllers (groups, releases, events) goes through cluster.Writer,
// and each replica runs its term (term.go) from Node.WhileLeader, as
// daemon.Server.lead does: the fleet carrying raft's term, the
// controllers with LeaveRunning.
//
// The bench runs each replica in its own process (servers.go,
// serverchild.go: a serverSide that opens its replica alone). The tests
// run them all in one process as well, so that they see each one's state
// directly; there, killing the leader closes its node (raft shut down,
// its listener closed): its term ends as a deposed leader's does,
// leaving every instance running, and another replica is elected and
// adopts them. The apps' folders and artifact stores are shared by the
// replicas (a real cluster fetches artifacts from a peer by digest; the
// agents here hold the only artifact from the bring-up).

// replica is one server: its store, and its node with a cluster.
type replica struct {
	id    string
	dir   string
	addr  string // raft's, with a cluster
	store *store.Store
	node  *cluster.Node // nil with -servers 1
	// w is what the term writes through: the store, or the node's
	// writer; hosts the fleet's host records written through it,
	// counted.
	w     store.Writer
	hosts *countedHosts

	stop context.CancelFunc
	done chan error // the term loop's end
}

// countedHosts counts the fleet's writes of host records: a heartbeat
// must not write one (it would go through the raft log).
type countedHosts struct {
	fleet.HostStore
	puts, deletes atomic.Int64
}

func (h *countedHosts) Put(host api.Host) error {
	h.puts.Add(1)
	return h.HostStore.Put(host)
}

func (h *countedHosts) Delete(name string) error {
	h.deletes.Add(1)
	return h.HostStore.Delete(name)
}

// openReplicas opens sc.Servers replicas and, with a cluster, waits
// until s0 leads a cluster of all of them. With only >= 0 it opens that
// replica alone (a server's process, server.go): s0 bootstraps and waits
// until it leads its cluster of one, and its parent adds the others.
func (s *serverSide) openReplicas(only int) error {
	n := max(s.sc.Servers, 1)
	for i := range n {
		if only >= 0 && i != only {
			continue
		}
		r := &replica{id: fmt.Sprintf("s%d", i), dir: filepath.Join(s.dir, "servers", fmt.Sprintf("s%d", i))}
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return err
		}
		st, err := store.Open(filepath.Join(r.dir, "shoal.db"), store.Options{})
		if err != nil {
			return err
		}
		r.store = st
		s.replicas = append(s.replicas, r)
		if n == 1 {
			r.w, r.hosts = st, &countedHosts{HostStore: st.Hosts()}
			continue
		}
		if err := s.openNode(r, i == 0); err != nil {
			return fmt.Errorf("server %s: %w", r.id, err)
		}
	}
	if n == 1 || only > 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := s.replicas[0].node
	if err := poll(ctx, 20*time.Millisecond, func() error {
		if !first.IsLeader() {
			return errors.New("s0 does not lead its cluster of one yet")
		}
		return nil
	}); err != nil {
		return err
	}
	for _, r := range s.replicas[1:] {
		if err := first.AddVoter(ctx, r.id, r.addr); err != nil {
			return fmt.Errorf("add %s: %w", r.id, err)
		}
	}
	return nil
}

// openNode opens r's cluster node on a new 127.0.0.1 listener, with
// certificates of role server from the fleet CA.
func (s *serverSide) openNode(r *replica, bootstrap bool) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srvTLS, err := pki.ServerTLSConfig(s.ca, []string{"127.0.0.1"})
	if err != nil {
		ln.Close()
		return err
	}
	cliTLS, err := pki.ServerClientTLSConfig(s.ca)
	if err != nil {
		ln.Close()
		return err
	}
	r.addr = ln.Addr().String()
	r.node, err = cluster.Open(cluster.Config{ID: r.id, Advertise: r.addr, Listener: ln, DataDir: r.dir,
		Store: r.store, ServerTLS: srvTLS, ClientTLS: cliTLS, Bootstrap: bootstrap,
		HeartbeatTimeout: s.sc.ElectionTimeout, ElectionTimeout: s.sc.ElectionTimeout, LeaderLeaseTimeout: s.sc.ElectionTimeout / 2})
	if err != nil {
		return err
	}
	w := cluster.Writer{Node: r.node}
	r.w, r.hosts = w, &countedHosts{HostStore: w.Hosts()}
	return nil
}

// runReplicas starts each replica's term loop: a server alone leads at
// once in term 1; a cluster's replica leads while raft says so.
func (s *serverSide) runReplicas() {
	for _, r := range s.replicas {
		ctx, cancel := context.WithCancel(context.Background())
		r.stop, r.done = cancel, make(chan error, 1)
		go func() {
			if r.node == nil {
				r.done <- s.lead(ctx, r, 1)
				return
			}
			r.done <- r.node.WhileLeader(ctx, func(ctx context.Context, term uint64) {
				if err := s.lead(ctx, r, term); err != nil {
					s.sc.Logger.Error("term ended", "server", r.id, "term", term, "error", err)
				}
			})
		}()
	}
}

// leader is the replica that runs a term now; nil between terms.
func (s *serverSide) leader() *replica {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.r
}

// leaderStore is the leading replica's store (s0's between terms).
func (s *serverSide) leaderStore() *store.Store {
	if r := s.leader(); r != nil {
		return r.store
	}
	return s.replicas[0].store
}

// killLeader closes the leading replica's node, as if its process died:
// its raft stops at once; its term ends (the controllers leave their
// instances running). It returns the replica killed.
func (s *serverSide) killLeader() (*replica, error) {
	r := s.leader()
	if r == nil || r.node == nil {
		return nil, errors.New("kill the leader: no cluster leader runs a term")
	}
	return r, r.node.Close()
}

// closeReplicas ends every term loop (the leader's term stops its apps),
// then closes the nodes and the stores.
func (s *serverSide) closeReplicas() error {
	var errs []error
	for _, r := range s.replicas {
		if r.stop != nil {
			r.stop()
		}
	}
	for _, r := range s.replicas {
		if r.done != nil {
			if err := <-r.done; err != nil && !errors.Is(err, cluster.ErrClosed) {
				errs = append(errs, fmt.Errorf("%s: %w", r.id, err))
			}
		}
	}
	for _, r := range s.replicas {
		if r.node != nil {
			if err := r.node.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.id, err))
			}
		}
		if err := r.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.id, err))
		}
	}
	return errors.Join(errs...)
}

// hostPuts is the fleet's host record writes so far, every replica's.
func (s *serverSide) hostPuts() int64 {
	var n int64
	for _, r := range s.replicas {
		n += r.hosts.puts.Load()
	}
	return n
}
