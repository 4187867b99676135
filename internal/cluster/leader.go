package cluster

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrLeadershipLost is the cause of the context WhileLeader gives fn when
// this node stops leading.
var ErrLeadershipLost = errors.New("leadership lost")

// WhileLeader runs fn each time this node becomes the leader, with a
// context that is cancelled (cause ErrLeadershipLost) as soon as it stops
// leading, and the term it leads in, which every action of fn carries so
// that a deposed leader's actions are refused (agents fence by term).
// Before fn, a Barrier: every entry committed by earlier leaders is
// applied to this node's store, so fn starts from the whole committed
// state. It returns when ctx ends (nil) or the node is closed
// (ErrClosed), in both cases after the running fn has returned.
//
//	follower --LeaderCh true--> Barrier --ok--> fn(ctx, term) running
//	   ^                          | lost            | LeaderCh false / ctx done
//	   +--------------------------+-----------------+-- cancel, wait for fn
//
// One WhileLeader per node: it consumes raft's leadership channel.
func (n *Node) WhileLeader(ctx context.Context, fn func(ctx context.Context, term uint64)) error {
	var (
		cancel context.CancelCauseFunc
		wg     sync.WaitGroup
	)
	stop := func() {
		if cancel != nil {
			cancel(ErrLeadershipLost)
			wg.Wait()
			cancel = nil
		}
	}
	defer stop()
	ch := n.raft.LeaderCh()
	if n.IsLeader() {
		// Leading already: the channel may have been read before.
		select {
		case <-ch:
		default:
		}
		cancel = n.lead(ctx, &wg, fn)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.closed:
			return ErrClosed
		case leading := <-ch:
			// Two trues in a row mean leadership was lost and regained
			// meanwhile: start again under the new term.
			stop()
			if leading {
				cancel = n.lead(ctx, &wg, fn)
			} else {
				n.log.Info("leadership lost", "server", n.cfg.ID)
			}
		}
	}
}

// lead starts fn after a Barrier, in a goroutine counted by wg.
func (n *Node) lead(ctx context.Context, wg *sync.WaitGroup, fn func(context.Context, uint64)) context.CancelCauseFunc {
	lctx, cancel := context.WithCancelCause(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			bctx, bcancel := context.WithTimeout(lctx, 10*time.Second)
			err := n.Barrier(bctx)
			bcancel()
			if err == nil {
				break
			}
			if lctx.Err() != nil || errors.Is(err, ErrNotLeader) {
				return
			}
			n.log.Warn("leader's barrier failed; retrying", "server", n.cfg.ID, "error", err)
			select {
			case <-lctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		term := n.Term()
		n.log.Info("leading", "server", n.cfg.ID, "term", term)
		fn(lctx, term)
	}()
	return cancel
}
