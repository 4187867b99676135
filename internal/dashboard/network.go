package dashboard

import (
	"time"

	"github.com/shoal-dev/shoal/internal/timeseries"
)

// networkSplit is how much of a slow request was the network and how
// much the app, from the balancer's phases and the client connection's
// round-trip time (issue 17):
//
//   - Seen, about what the client waited: Total plus one round trip (the
//     request's way in before the balancer's clock starts, the answer's
//     way out after it stops);
//   - Net, the network: that round trip plus the transfer of the answer
//     to the client (which a slow link stretches; it also holds a target
//     that streams its answer slowly, so it is an upper bound);
//   - App, the balancer's wait and the target's time to first byte.
type networkSplit struct {
	RTT, Seen, Net, App time.Duration
	NetPct, AppPct      int
}

// Network returns the request's network/app split; nil when its
// round-trip time is not known.
func (r slowRow) Network() *networkSplit { return splitOf(r.SlowRequest) }

func splitOf(q timeseries.SlowRequest) *networkSplit {
	if q.RTT <= 0 {
		return nil
	}
	s := &networkSplit{RTT: q.RTT, Seen: q.Total + q.RTT, Net: q.RTT + q.Transfer, App: q.Queue + q.TTFB}
	s.NetPct = int(100*float64(s.Net)/float64(s.Seen) + 0.5)
	s.AppPct = int(100*float64(s.App)/float64(s.Seen) + 0.5)
	return s
}
