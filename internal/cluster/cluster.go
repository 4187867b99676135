// Package cluster replicates the store of `shoal server` over Raft (issue
// 14), with github.com/hashicorp/raft as the consensus engine and
// github.com/hashicorp/raft-boltdb/v2 as its log and stable store.
//
// A Node is one server of the cluster. Every write to the desired state is
// a store.Command: the leader encodes it (store.EncodeCommand, with the
// leader's clock as its time), raft commits it to a majority, and every
// replica's state machine (fsm.go) applies it to its own store with
// store.Apply, in log order. Node.Apply returns the command's result on
// the leader once its own replica applied it; a follower refuses it with a
// *NotLeaderError naming the leader.
//
//	proposer (leader)            raft log (majority)          every replica
//	Apply(cmd) --encode--> raft.Apply --committed--> fsm.Apply --> store.Apply(cmd, at)
//	         <------------------ result / error of the leader's own replica
//
// Reads are local: each replica's store is the committed state as far as
// that replica has applied it (a follower's may lag by a heartbeat).
//
// The store is a view rebuilt from raft: at every Open of a node with raft
// state, the store is emptied (store.Reset) and raft restores its newest
// snapshot and replays the log after it. The log is the truth; nothing
// needs the store file and the log to agree after a crash. A store with
// data and no raft state beside it (a single server's) is refused: moving
// one into a cluster is not built.
//
// Files under Config.DataDir/raft: raft.db (raft-boltdb: log and stable
// store, 0600), snapshots/ (raft's file snapshots: each a copy of the
// store file, store.Snapshot). The transport is raft's NetworkTransport
// over mutual TLS (transport.go): servers only, by the fleet CA's role.
//
// Leadership: WhileLeader runs a function while this node leads, from a
// Barrier (every earlier entry applied) until leadership is lost, with
// raft's term: the term agents fence on.
//
// Backup and restore (backup.go): Node.Backup copies the whole state
// through the leader in the store's file format; Restore makes a data dir
// from which Open starts a new cluster holding such a copy.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/store"
)

// ErrNotLeader is wrapped by *NotLeaderError.
var ErrNotLeader = errors.New("not the cluster's leader")

// ErrClosed is returned by WhileLeader when the node is closed, and by a
// call that was waiting for raft when Close began (wrapped with
// ErrUnknownOutcome for a write).
var ErrClosed = errors.New("cluster node closed")

// ErrUnknownOutcome means the caller stopped waiting (its context ended,
// or the node was closed) or leadership was lost before the command's
// outcome was known: it may or may not be applied. Read the state again
// before retrying.
var ErrUnknownOutcome = errors.New("outcome unknown")

// NotLeaderError is a write refused by a node that does not lead. Leader
// and LeaderAddr name the leader as this node knows it (empty while there
// is none, during an election).
type NotLeaderError struct {
	Leader     string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return "not the cluster's leader, and no leader is known (an election is under way)"
	}
	return fmt.Sprintf("not the cluster's leader; the leader is %s at %s", e.Leader, e.LeaderAddr)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// Config configures Open. ID, Advertise, Listener, DataDir, Store and both
// TLS configurations are required.
type Config struct {
	// ID names this server in the cluster (raft's ServerID); it stays the
	// same across restarts.
	ID string
	// Advertise is the host:port the other servers dial to reach
	// Listener.
	Advertise string
	// Listener is the bound raft listener (plain TCP; the node wraps it in
	// TLS). The node owns it from Open on and closes it.
	Listener net.Listener
	// DataDir holds raft's files in DataDir/raft.
	DataDir string
	// Store is this replica's store. From Open on it is written only by
	// the node; its owner reads it and closes it after Close.
	Store *store.Store
	// ServerTLS is the listener's TLS configuration (a certificate of role
	// server from the fleet CA, client certificates verified against the
	// CA); ClientTLS the dialer's (the CA as root, a client certificate of
	// role server). Peers of any other role are refused.
	ServerTLS, ClientTLS *tls.Config
	// Bootstrap forms a new cluster of this server alone when DataDir has
	// no raft state; the others join it (Node.AddVoter on the leader). It
	// is ignored when raft state exists, so it may stay set.
	Bootstrap bool
	// HeartbeatTimeout and ElectionTimeout are raft's (default 1 s each):
	// a follower that hears no leader for about that long starts an
	// election. LeaderLeaseTimeout (default 500 ms) is how long a leader
	// stays one without hearing from a majority.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// SnapshotThreshold is how many new log entries start a snapshot
	// (default 8192); SnapshotInterval how often that is checked (default
	// 2 min); TrailingLogs how many entries a snapshot leaves in the log
	// for slow followers (default 10240).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// Now is the clock of commands' times; nil is time.Now.
	Now func() time.Time
	// Logger receives the node's and raft's logs; nil discards.
	Logger *slog.Logger

	// wrapStream, when set (by this package's tests only), wraps the
	// transport's stream layer: the partition tests cut a node's
	// connections with it (partition_test.go).
	wrapStream func(raft.StreamLayer) raft.StreamLayer
}

// Node is one server of the cluster; see the package documentation. Its
// methods are safe for concurrent use.
type Node struct {
	cfg       Config
	log       *slog.Logger
	raft      *raft.Raft
	fsm       *fsm
	logs      *raftboltdb.BoltStore
	transport *raft.NetworkTransport

	groupMu sync.Mutex
	groups  map[string]*sync.Mutex // UpdateGroup's per-app locks

	hadState bool // raft state existed at Open

	verify verifier       // VerifyLeader's rounds (verify.go)
	rounds sync.WaitGroup // their goroutines

	closed    chan struct{} // closed when Close begins
	closeOnce sync.Once
	closeErr  error
}

// Open starts the node: it opens raft's files, rebuilds the store from
// the newest snapshot and the log (see the package documentation), and
// joins raft. It returns once raft runs; the node may not know a leader
// yet. On error everything opened is released, Listener included.
func Open(cfg Config) (n *Node, err error) {
	if cfg.Listener == nil {
		return nil, errors.New("open cluster node: no listener")
	}
	defer func() {
		if err != nil {
			cfg.Listener.Close()
		}
	}()
	var missing []string
	for name, empty := range map[string]bool{"ID": cfg.ID == "", "Advertise": cfg.Advertise == "", "DataDir": cfg.DataDir == "", "Store": cfg.Store == nil} {
		if empty {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("open cluster node: missing %v", missing)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = newHCLogger(log)
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("open cluster node: %w", err)
	}

	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open cluster node: %w", err)
	}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bolt.Options{Timeout: time.Second}})
	if err != nil {
		return nil, fmt.Errorf("open cluster node: raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	defer func() {
		if err != nil {
			logs.Close()
		}
	}()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, rc.Logger)
	if err != nil {
		return nil, fmt.Errorf("open cluster node: snapshots: %w", err)
	}
	existing, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return nil, fmt.Errorf("open cluster node: %w", err)
	}
	if existing {
		// raft restores the newest snapshot and replays the log after it.
		if err := cfg.Store.Reset(); err != nil {
			return nil, fmt.Errorf("open cluster node: %w", err)
		}
	} else if empty, err := cfg.Store.Empty(); err != nil {
		return nil, fmt.Errorf("open cluster node: %w", err)
	} else if !empty {
		return nil, fmt.Errorf("open cluster node: %s holds desired state but %s has no raft state: it is a single server's store, and moving one into a cluster is not supported yet (start the cluster with an empty data_dir)", cfg.Store.Path(), dir)
	}
	cache, err := raft.NewLogCache(512, logs)
	if err != nil {
		return nil, fmt.Errorf("open cluster node: %w", err)
	}
	stream, err := newTLSStream(cfg.Listener, cfg.Advertise, cfg.ServerTLS, cfg.ClientTLS)
	if err != nil {
		return nil, fmt.Errorf("open cluster node: %w", err)
	}
	var layer raft.StreamLayer = stream
	if cfg.wrapStream != nil {
		layer = cfg.wrapStream(stream)
	}
	// MaxRPCsInFlight 1: no pipelined replication. Its pipeline can
	// deadlock once a follower answers an append with Success=false (a
	// leader deposed by a newer term, a follower clearing its log
	// suffix): the replication goroutine parks for good on the
	// pipeline's channel, never replicates to that follower again, and
	// raft's Shutdown waits for it forever (a SIGTERMed `shoal server`
	// that never exited, in e2e TestClusterLabLinearizable;
	// hashicorp/raft#612). Raft's own docs find the pipelining of little
	// benefit beside its batching (hashicorp/raft#541).
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, MaxRPCsInFlight: 1, Timeout: 10 * time.Second, Logger: rc.Logger,
	})
	f := &fsm{st: cfg.Store, log: log, snaps: snaps}
	if !existing && cfg.Bootstrap {
		boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: transport.LocalAddr()}}}
		if err := raft.BootstrapCluster(rc, cache, logs, snaps, transport, boot); err != nil {
			transport.Close()
			return nil, fmt.Errorf("open cluster node: bootstrap: %w", err)
		}
		log.Info("cluster bootstrapped", "server", cfg.ID, "addr", cfg.Advertise)
	}
	r, err := raft.NewRaft(rc, f, cache, logs, snaps, transport)
	if err != nil {
		transport.Close()
		return nil, fmt.Errorf("open cluster node: %w", err)
	}
	return &Node{cfg: cfg, log: log, raft: r, fsm: f, logs: logs, transport: transport, groups: map[string]*sync.Mutex{},
		hadState: existing, closed: make(chan struct{})}, nil
}

// Close leaves raft running nowhere: it shuts raft down (a leader stops
// leading; the others elect a new one), closes the transport and raft's
// files, and waits for raft's goroutines. A call waiting for raft returns
// at once (ErrClosed; for a write, with ErrUnknownOutcome). The store
// stays open (its owner closes it). Safe to call twice.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.closed)
		err := n.raft.Shutdown().Error()
		err = errors.Join(err, n.transport.Close())
		err = errors.Join(err, n.logs.Close())
		if err != nil {
			n.closeErr = fmt.Errorf("close cluster node: %w", err)
		}
		n.rounds.Wait()
	})
	return n.closeErr
}

// ID is this server's name in the cluster.
func (n *Node) ID() string { return n.cfg.ID }

// Advertise is the address the other servers dial to reach this node's
// raft listener (Config.Advertise).
func (n *Node) Advertise() string { return n.cfg.Advertise }

// HadState reports whether DataDir held raft state when the node opened:
// false for a server that has not been added to (or formed) a cluster
// yet, true once it has been.
func (n *Node) HadState() bool { return n.hadState }

// Store is this replica's store, to read.
func (n *Node) Store() *store.Store { return n.cfg.Store }

// Err reports a replica that stopped applying the log (a command it
// cannot read, from a newer Shoal): nil while it applies.
func (n *Node) Err() error { return n.fsm.err() }

// Leader returns the leader's ID and address as this node knows them;
// empty while none is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader reports whether this node leads now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Term is raft's current term on this node.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// AppliedIndex is the index of the last command (or snapshot) this
// replica's store applied: not raft's applied index, which counts
// entries queued for the store and may run ahead of it.
func (n *Node) AppliedIndex() uint64 { return n.fsm.index.Load() }

func (n *Node) notLeader() error {
	id, addr := n.Leader()
	return &NotLeaderError{Leader: id, LeaderAddr: addr}
}

// Apply proposes c and returns its result (documented on each
// store.Command type) once it is committed and applied by this node's
// replica, which is then in every later read of this node's store. It is
// for the leader: another node returns a *NotLeaderError. When ctx ends
// first, or leadership is lost while c is in flight, the error wraps
// ErrUnknownOutcome: c may still be applied.
func (n *Node) Apply(ctx context.Context, c store.Command) (any, error) {
	if err := n.fsm.err(); err != nil {
		return nil, err
	}
	data, err := store.EncodeCommand(c, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	if n.raft.State() != raft.Leader {
		return nil, n.notLeader()
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, fmt.Errorf("apply %s: %w: %w", c.Op(), ErrUnknownOutcome, ctx.Err())
		}
	}
	f := n.raft.Apply(data, timeout)
	select {
	case err = <-answer(f):
	case <-ctx.Done():
		return nil, fmt.Errorf("apply %s: %w: %w", c.Op(), ErrUnknownOutcome, context.Cause(ctx))
	case <-n.closed:
		return nil, fmt.Errorf("apply %s: %w: %w", c.Op(), ErrUnknownOutcome, ErrClosed)
	}
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return nil, n.notLeader()
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrEnqueueTimeout):
		return nil, fmt.Errorf("apply %s: %w: %w", c.Op(), ErrUnknownOutcome, err)
	case err != nil:
		return nil, fmt.Errorf("apply %s: %w", c.Op(), err)
	}
	res, _ := f.Response().(applied)
	return res.result, res.err
}

// maxSwaps bounds UpdateGroup's retries after a conflicting write.
const maxSwaps = 8

// UpdateGroup is store.UpdateGroup for a replicated store: fn runs here,
// on the leader's applied state, and the result is proposed as a
// store.SwapGroup, which every replica refuses if the group changed in
// between; then it reads and tries again (at most 8 times, under a lock
// per app so that this node's own updates do not collide). fn may run more
// than once and must not keep the pointer.
func (n *Node) UpdateGroup(ctx context.Context, app string, fn func(*api.Group) error) (api.Group, error) {
	mu := n.groupLock(app)
	mu.Lock()
	defer mu.Unlock()
	for range maxSwaps {
		if n.raft.State() != raft.Leader {
			return api.Group{}, n.notLeader()
		}
		prev, found, err := n.cfg.Store.GetGroup(app)
		if err != nil {
			return api.Group{}, err
		}
		if !found {
			return api.Group{}, fmt.Errorf("update group %s: %w", app, store.ErrNotFound)
		}
		next := prev
		if err := fn(&next); err != nil {
			return api.Group{}, fmt.Errorf("update group %s: %w", app, err)
		}
		next.App = app
		res, err := n.Apply(ctx, store.SwapGroup{Prev: prev, Next: next})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return api.Group{}, err
		}
		return res.(api.Group), nil
	}
	return api.Group{}, fmt.Errorf("update group %s: %w %d times in a row", app, store.ErrConflict, maxSwaps)
}

func (n *Node) groupLock(app string) *sync.Mutex {
	n.groupMu.Lock()
	defer n.groupMu.Unlock()
	mu := n.groups[app]
	if mu == nil {
		mu = &sync.Mutex{}
		n.groups[app] = mu
	}
	return mu
}

// Barrier returns once every entry committed before it is applied on this
// node, which must lead.
func (n *Node) Barrier(ctx context.Context) error {
	return n.wait(ctx, n.raft.Barrier(ctxTimeout(ctx)))
}

// Snapshot takes a snapshot now and compacts the log behind it (raft
// keeps TrailingLogs entries).
func (n *Node) Snapshot(ctx context.Context) error {
	return n.wait(ctx, n.raft.Snapshot())
}

// AddVoter adds the server id at addr as a voter, or updates its address.
// For the leader.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	return n.wait(ctx, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, ctxTimeout(ctx)))
}

// RemoveServer removes the server id from the cluster. For the leader; a
// leader that removes itself steps down.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	return n.wait(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, ctxTimeout(ctx)))
}

// Server is one member of the cluster's configuration.
type Server struct {
	ID, Addr string
	Voter    bool
	Leader   bool
}

// Servers returns the cluster's members as this node knows them.
func (n *Node) Servers(ctx context.Context) ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := n.wait(ctx, f); err != nil {
		return nil, err
	}
	_, leader := n.raft.LeaderWithID()
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader})
	}
	return out, nil
}

// LastContact is when this follower last heard from the leader (zero on
// the leader, and before any contact).
func (n *Node) LastContact() time.Time { return n.raft.LastContact() }

// wait waits for f or ctx; raft's errors for a non-leader become a
// *NotLeaderError.
func (n *Node) wait(ctx context.Context, f raft.Future) error {
	select {
	case err := <-answer(f):
		if errors.Is(err, raft.ErrNotLeader) {
			return n.notLeader()
		}
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-n.closed:
		return ErrClosed
	}
}

// answer delivers f's error. Its goroutine is not waited for by Close:
// raft may never answer a future that is in flight when it shuts down (a
// committed entry queued for the state machine; hashicorp/raft#498), and
// then the goroutine stays blocked; otherwise it ends when raft answers,
// which it does at shutdown for everything else.
func answer(f raft.Future) <-chan error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	return done
}

func ctxTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

// Status is one node's view of itself, for `shoal servers` (each server
// reports its own; step 3 of issue 14 gathers them).
type Status struct {
	ID string
	// Role is raft's state of this node: Leader, Follower, Candidate or
	// Shutdown.
	Role string
	// Term is raft's current term on this node.
	Term uint64
	// Leader is the leader's ID as this node knows it ("" during an
	// election).
	Leader string
	// LastContact is when this follower last heard from the leader (zero
	// on the leader).
	LastContact time.Time
	// AppliedIndex and CommitIndex: how far this replica's store applied
	// the log (Node.AppliedIndex: its last command; entries without a
	// command, such as a new leader's no-op, do not move it), and the
	// last entry it knows committed.
	AppliedIndex, CommitIndex uint64
}

// Status returns this node's view of itself.
func (n *Node) Status() Status {
	leader, _ := n.Leader()
	st := Status{ID: n.cfg.ID, Role: n.raft.State().String(), Term: n.raft.CurrentTerm(), Leader: leader,
		AppliedIndex: n.AppliedIndex(), CommitIndex: n.raft.CommitIndex()}
	if n.raft.State() != raft.Leader {
		st.LastContact = n.raft.LastContact()
	}
	return st
}
