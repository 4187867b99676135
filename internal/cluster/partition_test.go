package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// fabric is the network between a lab's nodes as the tests see it: a
// node that is cut can reach no other node and no other node can reach
// it, both ways, until it is healed. It wraps each node's stream layer
// (Config.wrapStream): a dial from or to a cut node fails, and cutting a
// node closes every connection it dialed or was dialed on. Raft dials
// every connection it uses (the sender of an RPC dials the receiver), so
// tracking the dialed ends covers them all: closing one end ends the
// other's reads.
type fabric struct {
	mu    sync.Mutex
	cut   map[string]bool   // node ID -> cut off
	ids   map[string]string // raft address -> node ID
	conns map[*fabricConn]struct{}
}

func newFabric() *fabric {
	return &fabric{cut: map[string]bool{}, ids: map[string]string{}, conns: map[*fabricConn]struct{}{}}
}

// tune plugs node cfg.ID into the fabric; use it as (part of) a lab's
// tune.
func (f *fabric) tune(cfg *Config) {
	id := cfg.ID
	cfg.wrapStream = func(s raft.StreamLayer) raft.StreamLayer {
		f.mu.Lock()
		f.ids[s.Addr().String()] = id
		f.mu.Unlock()
		return &fabricStream{StreamLayer: s, f: f, id: id}
	}
}

// isolate cuts node id off and closes its connections.
func (f *fabric) isolate(id string) {
	f.mu.Lock()
	f.cut[id] = true
	var drop []*fabricConn
	for c := range f.conns {
		if c.from == id || c.to == id {
			drop = append(drop, c)
		}
	}
	f.mu.Unlock()
	for _, c := range drop {
		c.Close()
	}
}

// heal lets every node reach every other again.
func (f *fabric) heal() {
	f.mu.Lock()
	clear(f.cut)
	f.mu.Unlock()
}

type fabricStream struct {
	raft.StreamLayer
	f  *fabric
	id string
}

func (s *fabricStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.f.mu.Lock()
	to := s.f.ids[string(addr)]
	refused := s.f.cut[s.id] || s.f.cut[to]
	s.f.mu.Unlock()
	if refused {
		return nil, fmt.Errorf("fabric: %s cannot reach %s (%s): partitioned", s.id, to, addr)
	}
	conn, err := s.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	c := &fabricConn{Conn: conn, f: s.f, from: s.id, to: to}
	s.f.mu.Lock()
	// Checked again under the lock that isolate takes: a connection made
	// while its node was being cut is dropped here, or by isolate.
	refused = s.f.cut[s.id] || s.f.cut[to]
	if !refused {
		s.f.conns[c] = struct{}{}
	}
	s.f.mu.Unlock()
	if refused {
		conn.Close()
		return nil, fmt.Errorf("fabric: %s cannot reach %s (%s): partitioned", s.id, to, addr)
	}
	return c, nil
}

type fabricConn struct {
	net.Conn
	f        *fabric
	from, to string
}

func (c *fabricConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}

// TestPartitionedLeaderMakesNoChange cuts the leader off alone: the
// writes it is given fail (not acknowledged), its store does not move
// while the two others elect a leader and take writes, and once healed
// it holds their writes and none of its own.
func TestPartitionedLeaderMakesNoChange(t *testing.T) {
	fab := newFabric()
	l := newLab(t, fab.tune)
	l.three()
	setup(l)
	l.apply(store.SetDesired{App: "web", Desired: 3})
	l.eventuallyEqual()
	old := l.leader(10 * time.Second)
	before, err := view(old.st)
	if err != nil {
		t.Fatal(err)
	}
	fab.isolate(old.id)

	// Writes on the cut-off leader: refused while it still believes it
	// leads (no majority: the outcome is unknown at the deadline) and
	// once it stepped down (not the leader). None is acknowledged.
	isolatedWrites := 0
	testenv.Eventually(t, 20*time.Second, func() error {
		isolatedWrites++
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := old.n.Apply(ctx, store.SetDesired{App: "web", Desired: 50 + isolatedWrites%40})
		if err == nil {
			t.Fatalf("the cut-off leader %s acknowledged a write", old.id)
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("write on the cut-off leader: %v, want not-leader or unknown outcome", err)
		}
		if _, err := old.n.UpdateGroup(ctx, "web", func(g *api.Group) error { g.Desired = 99; return nil }); err == nil {
			t.Fatalf("the cut-off leader %s acknowledged UpdateGroup", old.id)
		}
		_, err = old.n.Apply(ctx, store.UpdateEnvOverrides{App: "web", Set: []api.EnvVar{{Name: "CUT", Value: "1"}}})
		if err == nil {
			t.Fatalf("the cut-off leader %s acknowledged an env write", old.id)
		}
		if old.n.IsLeader() {
			return errors.New("the cut-off node still leads")
		}
		return nil
	})
	t.Logf("%d writes refused on the cut-off node %s", isolatedWrites*3, old.id)

	// The majority elects a leader among itself and takes writes (both
	// idempotent: retried after an unknown outcome, as an election under
	// load may cut one).
	var lead *member
	for _, c := range []store.Command{
		store.SetDesired{App: "web", Desired: 7},
		store.UpdateEnvOverrides{App: "web", Set: []api.EnvVar{{Name: "MAJORITY", Value: "1"}}},
	} {
		testenv.Eventually(t, 20*time.Second, func() error {
			for _, m := range l.running() {
				if m != old && m.n.IsLeader() {
					lead = m
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
					defer cancel()
					_, err := m.n.Apply(ctx, c)
					return err
				}
			}
			return errors.New("no leader among the majority")
		})
	}
	if after, err := view(old.st); err != nil || after != before {
		t.Fatalf("the cut-off node's store moved (%v):\n%s\nwas\n%s", err, after, before)
	}
	if id, _ := old.n.Leader(); id == lead.id {
		t.Fatalf("the cut-off node knows the new leader %s: the partition leaks", lead.id)
	}

	fab.heal()
	l.eventuallyEqual()
	g, _, err := old.st.GetGroup("web")
	if err != nil {
		t.Fatal(err)
	}
	env, err := old.st.EnvOverrides("web")
	if err != nil {
		t.Fatal(err)
	}
	if g.Desired != 7 || len(env) != 1 || env[0].Name != "MAJORITY" {
		t.Fatalf("healed %s holds desired %d, env %+v; want the majority's 7 and MAJORITY only", old.id, g.Desired, env)
	}
}
