package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// DefaultExitRing is how many exits the agent keeps for the server to read
// (Config.ExitRing): at about 200 bytes each (more with a log tail of up to
// 20 lines), some hundreds of KiB. A server that falls further behind than
// that gets ErrExitsGone and lists the instances instead.
const DefaultExitRing = 1024

// maxPage bounds the exits of one answer; a reader behind by more asks again.
const maxPage = 256

// maxLogTail bounds the log tail kept with an exit (its end is kept), so that
// a page stays small whatever the app wrote.
const maxLogTail = 4 << 10

// ErrExitsGone is returned (wrapped) when the exits after a sequence number
// are no longer all held: some were dropped from the ring, or the sequence
// belongs to another epoch (an earlier run of the agent). The reader lists
// the instances and follows again from the list's cursor.
var ErrExitsGone = errors.New("exits no longer held")

// exitRing numbers exits from 1 and keeps the newest of them. Readers wait
// on wake, a channel replaced (after being closed) at every push.
type exitRing struct {
	epoch string

	mu   sync.Mutex
	buf  []api.InstanceExit // the newest exits, oldest first; at most cap entries
	cap  int
	last uint64 // sequence number of the newest exit; 0 before the first
	wake chan struct{}
}

func newExitRing(epoch string, capacity int) *exitRing {
	return &exitRing{epoch: epoch, cap: capacity, wake: make(chan struct{})}
}

// push numbers x, keeps it and wakes every waiting reader.
func (r *exitRing) push(x api.InstanceExit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	x.Seq = r.last
	if n := len(x.LogTail); n > maxLogTail {
		x.LogTail = "..." + x.LogTail[n-maxLogTail:]
	}
	if len(r.buf) == r.cap {
		copy(r.buf, r.buf[1:])
		r.buf = r.buf[:len(r.buf)-1]
	}
	r.buf = append(r.buf, x)
	close(r.wake)
	r.wake = make(chan struct{})
}

// lastSeq returns the sequence number of the newest exit.
func (r *exitRing) lastSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// after returns the exits of epoch numbered above seq (at most maxPage of
// them, oldest first), waiting until there is
// one, wait has passed (an empty page) or ctx ends (ctx's error). It returns
// an error wrapping ErrExitsGone when epoch is not the ring's, or when exits
// after seq were dropped; one wrapping ErrBadRequest for a seq beyond the
// newest exit.
func (r *exitRing) after(ctx context.Context, epoch string, seq uint64, wait time.Duration) (api.ExitsPage, error) {
	if epoch != "" && epoch != r.epoch {
		return api.ExitsPage{}, fmt.Errorf("%w: epoch %s is not this agent's run (%s): list the instances", ErrExitsGone, epoch, r.epoch)
	}
	if epoch == "" && seq > 0 {
		return api.ExitsPage{}, fmt.Errorf("%w: after=%d without its epoch", ErrBadRequest, seq)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		page, wake, err := r.read(seq)
		if err != nil || len(page.Exits) > 0 {
			return page, err
		}
		select {
		case <-wake:
		case <-timer.C:
			return page, nil
		case <-ctx.Done():
			return api.ExitsPage{}, ctx.Err()
		}
	}
}

// read is one look at the ring: the exits after seq, and the channel closed
// at the next push.
func (r *exitRing) read(seq uint64) (api.ExitsPage, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	page := api.ExitsPage{Epoch: r.epoch, Last: r.last, Exits: []api.InstanceExit{}}
	if seq > r.last {
		return api.ExitsPage{}, nil, fmt.Errorf("%w: after=%d is beyond the newest exit %d of epoch %s", ErrBadRequest, seq, r.last, r.epoch)
	}
	if len(r.buf) > 0 && r.buf[0].Seq > seq+1 {
		return api.ExitsPage{}, nil, fmt.Errorf("%w: exits %d to %d were dropped (the agent keeps the last %d): list the instances",
			ErrExitsGone, seq+1, r.buf[0].Seq-1, r.cap)
	}
	for _, x := range r.buf {
		if x.Seq > seq && len(page.Exits) < maxPage {
			page.Exits = append(page.Exits, x)
		}
	}
	return page, r.wake, nil
}
