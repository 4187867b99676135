package uisource

import (
	"net/http"
	"strings"

	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

// maxRouteLen bounds the route names taken from request paths.
const maxRouteLen = 48

// Observer is the balancer's per-request hook for the dashboard: it counts
// every finished request of a pool in Series (per group, and per route)
// and offers it to Slow with its time split into queue, time to first
// byte and transfer. It copies what it keeps, so the balancer may reuse
// its record after the call. Safe for concurrent use; it never blocks on
// I/O.
//
// The dashboard's "route" is the request path's first segment ("/",
// "/api/", "/healthz"), not the balancer route: `shoal up` has a single
// route "/", and a slow page is found by its path. The timeseries Store
// bounds the number of route series and counts the rest under
// timeseries.OtherRoute.
//
// A held-open exchange (lb.RequestRecord.Held: a long poll, a stream,
// server-sent events) stays out of Series and Slow, whose latencies and
// slowest pages it would distort; it is counted per group in Held, when
// set, with its open duration.
type Observer struct {
	Series *timeseries.Store
	Slow   *timeseries.Slow
	// Held receives the held-open exchanges per group (Key{Group: pool}),
	// with how long each stayed open. Nil drops them.
	Held *timeseries.Store
	// PageLoad receives every request's cache result and body bytes
	// before and after compression, for the page-load report. Nil drops
	// them.
	PageLoad *timeseries.PageLoad
}

var _ lb.RequestObserver = (*Observer)(nil)

// ObserveRequest implements lb.RequestObserver.
func (o *Observer) ObserveRequest(rec *lb.RequestRecord) { o.observe(rec) }

// observe records r. Requests that no pool served (no route, maintenance)
// belong to no group and are not recorded; nor are WebSocket tunnels,
// whose Total is the life of a connection, not the latency of a request.
// Held-open exchanges go to Held alone.
func (o *Observer) observe(r *lb.RequestRecord) {
	if r.Pool == "" || r.Status == http.StatusSwitchingProtocols {
		return
	}
	if r.Held {
		if o.Held != nil {
			o.Held.Record(r.Start.Add(r.Total), r.Pool, "", r.Status, r.Total)
		}
		return
	}
	route := routeOf(r.Path)
	if o.PageLoad != nil {
		o.PageLoad.Record(pageLoadSample(r, route))
	}
	o.Series.Record(r.Start.Add(r.Total), r.Pool, route, r.Status, r.Total)
	o.Slow.Offer(timeseries.SlowRequest{
		Time: r.Start, RequestID: r.RequestID, Method: r.Method, Host: r.Host, Path: r.Path,
		Route: route, Group: r.Pool, Target: r.Target, Status: r.Status,
		Total: r.Total, Queue: r.Queue, TTFB: r.TTFB, Transfer: r.Transfer, RTT: r.RTT,
	})
}

// routeOf returns the first segment of path, with its trailing slash when
// more follows: "/" for "/" or "", "/api/" for "/api/users/1", "/healthz"
// for "/healthz". It returns a substring of path (no allocation).
func routeOf(path string) string {
	if path == "" || path[0] != '/' {
		return "/"
	}
	end := len(path)
	if i := strings.IndexByte(path[1:], '/'); i >= 0 {
		end = i + 2
	}
	if i := strings.IndexAny(path[:end], "?#"); i >= 0 {
		end = i
	}
	if end > maxRouteLen {
		end = maxRouteLen
	}
	if end <= 1 || path[1] == '/' {
		return "/" // "/" or an empty first segment ("//x")
	}
	return path[:end]
}

// pageLoadSample is what the page-load report reads of r: the target's
// time (time to first byte and transfer) and the client's (for a hit,
// which reached no target, the whole exchange).
func pageLoadSample(r *lb.RequestRecord, route string) timeseries.PageLoadSample {
	s := timeseries.PageLoadSample{Group: r.Pool, Route: route, Cache: r.Cache,
		BodyBytes: r.BodyBytes, SentBytes: r.BytesOut, TargetTime: r.TTFB + r.Transfer, ClientTime: r.Transfer}
	if r.Cache == "hit" {
		s.TargetTime, s.ClientTime = 0, r.Total
	}
	return s
}
