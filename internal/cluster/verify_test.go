package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestVerifyLeader: the leader confirms its lead in its term, for many
// concurrent reads at once; a follower, or the leader asked about
// another term, does not; and a leader cut off from the others never
// confirms, though it still believes it leads until its lease runs out
// (it would serve stale reads: the others elect a leader and take
// writes meanwhile).
func TestVerifyLeader(t *testing.T) {
	fab := newFabric()
	l := newLab(t, fab.tune)
	l.three()
	setup(l)
	lead := l.leader(10 * time.Second)
	// An election may come on a loaded machine: each check is repeated
	// on whoever leads then.
	testenv.Eventually(t, 20*time.Second, func() error {
		lead = l.leader(10 * time.Second)
		term := lead.n.Term()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		errs := make([]error, 16)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = lead.n.VerifyLeader(ctx, term) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("the leader %s in term %d: %w", lead.id, term, err)
		}
		if err := lead.n.VerifyLeader(ctx, term+1); !errors.Is(err, ErrNotLeader) {
			return fmt.Errorf("the leader %s asked about term %d: %v, want not the leader", lead.id, term+1, err)
		}
		for _, m := range l.running() {
			if m == lead {
				continue
			}
			if err := m.n.VerifyLeader(ctx, m.n.Term()); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("the follower %s: %v, want not the leader", m.id, err)
			}
		}
		return nil
	})

	term := lead.n.Term()
	fab.isolate(lead.id)
	leading := lead.n.IsLeader()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := lead.n.VerifyLeader(ctx, term); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the cut-off leader %s (leading when cut: %t): %v, want not the leader", lead.id, leading, err)
	}
	t.Logf("the cut-off leader %s refused (leading when cut: %t)", lead.id, leading)
}

// TestVerifierRounds: a read that arrives while a round runs waits for
// the next round, never the running one (which may have been answered
// before the read began); reads that arrive together share it; and
// once no read waits, the next read starts a round of its own.
func TestVerifierRounds(t *testing.T) {
	var v verifier
	first, start := v.join()
	if !start {
		t.Fatal("the first read did not start a round")
	}
	a, startA := v.join()
	b, startB := v.join()
	if startA || startB || a == first || a != b {
		t.Fatalf("reads during a round: start %t %t, same as the running round %t, shared %t; want the next round, shared, not started by them",
			startA, startB, a == first, a == b)
	}
	if next := v.finish(); next != a {
		t.Fatal("the round that ended did not hand over to the next one")
	}
	if next := v.finish(); next != nil {
		t.Fatal("a round was left to run with no read waiting")
	}
	if _, start := v.join(); !start {
		t.Fatal("a read after the rounds ended did not start a round")
	}
}

// TestNoPipelinedReplication: a node's transport refuses pipelined
// appends, so raft replicates with one request at a time: its pipeline
// deadlocks after a follower refuses an append (hashicorp/raft#612), and
// then a SIGTERMed server never exits (see Open).
func TestNoPipelinedReplication(t *testing.T) {
	l := newLab(t, nil)
	m := l.start("a", true)
	if _, err := m.n.transport.AppendEntriesPipeline("b", "127.0.0.1:1"); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline: %v, want %v", err, raft.ErrPipelineReplicationNotSupported)
	}
}
