package cluster

import (
	"context"
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// Reads of the leader's state. A leader that was deposed without noticing
// yet (cut off from the others, its lease not run out) still answers from
// its replica, which lacks what the new leader committed since: a stale
// read. Before a read, the leader confirms that a majority still follows
// it (raft's VerifyLeader: one round of heartbeats, no log entry), in the
// term its caller started from. Concurrent reads share a round; a read
// that arrives while one is under way waits for the next, which starts
// after it arrived: a round begun before the read may have been answered
// before it too, and then confirms nothing about the read's time.
//
//	read --> round under way? --no--> start a round, wait for it
//	                | yes
//	                v
//	          join the next round (it starts when this one ends), wait for it

// verifier batches the reads' rounds. The zero value is ready.
type verifier struct {
	mu      sync.Mutex
	running bool
	next    *verifyRound // the round that starts when the running one ends
}

// verifyRound is one VerifyLeader round and the reads that wait for it.
type verifyRound struct {
	done chan struct{} // closed when err is set
	err  error
}

// join returns the round the caller waits for; start says that the
// caller must run it (none was under way).
func (v *verifier) join() (r *verifyRound, start bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.running {
		v.running = true
		return &verifyRound{done: make(chan struct{})}, true
	}
	if v.next == nil {
		v.next = &verifyRound{done: make(chan struct{})}
	}
	return v.next, false
}

// finish ends the running round and returns the next one to run, or nil.
func (v *verifier) finish() *verifyRound {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.next
	v.next = nil
	v.running = r != nil
	return r
}

// VerifyLeader returns nil once a majority of the cluster confirmed,
// after the call began, that this node leads it in term, the term whose
// state its caller serves (WhileLeader's); a *NotLeaderError when this
// node does not lead, or leads in another term; ErrClosed when the node
// closes first; ctx's cause when ctx ends first. A read answered after
// it returned nil sees every write acknowledged before the read began:
// this leader applied each before acknowledging it, and those of earlier
// terms before its term's work began (WhileLeader's Barrier). It costs
// one round trip to the followers, shared by concurrent callers.
func (n *Node) VerifyLeader(ctx context.Context, term uint64) error {
	if n.raft.State() != raft.Leader || n.Term() != term {
		return n.notLeader()
	}
	r, start := n.verify.join()
	if start {
		n.rounds.Add(1)
		go n.runRounds(r) // owned: Close waits for rounds
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-n.closed:
		return ErrClosed
	}
	if r.err != nil {
		return r.err
	}
	// Terms only grow: the same term before and after the round is the
	// term the round confirmed.
	if n.Term() != term {
		return n.notLeader()
	}
	return nil
}

// runRounds runs r, then each round that reads joined meanwhile, until
// none is left.
func (n *Node) runRounds(r *verifyRound) {
	defer n.rounds.Done()
	for r != nil {
		select {
		case r.err = <-answer(n.raft.VerifyLeader()):
		case <-n.closed:
			r.err = ErrClosed
		}
		if errors.Is(r.err, raft.ErrNotLeader) || errors.Is(r.err, raft.ErrLeadershipLost) {
			r.err = n.notLeader()
		}
		close(r.done)
		r = n.verify.finish()
	}
}
