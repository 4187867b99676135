package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/lb"
)

// nodeDrains are the drains and removals of targets that one applied page
// started on a balancer node. The node waits for them before its next
// call, which tells the server that the page is applied: the server stops
// an instance only once every node has applied its drain
// (lbStream.awaitDrain), so "drain before stop" holds through the nodes,
// whose traffic the server's own pool does not see.
type nodeDrains []nodeDrain

// nodeDrain is one target of a pool being drained or removed.
type nodeDrain struct {
	pool, addr string
	idle       <-chan struct{} // closed by the pool when the target is idle (or deleted)
	timeout    time.Duration   // the pool's drain timeout
}

// add records the drain of addr in pool p; a nil idle (the pool refused)
// is left out.
func (d *nodeDrains) add(p api.LBPool, addr string, idle <-chan struct{}) {
	if idle == nil {
		return
	}
	to := dur(p.DrainTimeoutMS)
	if to <= 0 {
		to = lb.DefaultDrainTimeout
	}
	*d = append(*d, nodeDrain{pool: p.Name, addr: addr, idle: idle, timeout: to})
}

// wait returns once every target is idle, or ctx ends. It is bounded by
// each pool's drain timeout plus a second from the call: at the timeout
// the pool cuts the requests left, which end at once; a drain that still
// has not ended is logged and no longer waited for.
func (d nodeDrains) wait(ctx context.Context, log *slog.Logger) {
	start := time.Now()
	for _, dr := range d {
		t := time.NewTimer(time.Until(start.Add(dr.timeout + time.Second)))
		select {
		case <-dr.idle:
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			log.Warn("drain of a target did not end within the pool's drain timeout", "pool", dr.pool, "target", dr.addr)
		}
		t.Stop()
	}
}
