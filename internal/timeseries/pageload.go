package timeseries

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// The page-load report (issue 18): per group and route, what the
// balancer's asset cache and compression did to the answers since the
// keeper was made, and an estimate of the time they saved the clients.

// Bounds of a PageLoad keeper.
const (
	// pageLoadMaxRoutes bounds the route rows over all groups; requests
	// of further routes count under OtherRoute of their group.
	pageLoadMaxRoutes = 64
	// pageLoadSamples is how many target times per route the median is
	// taken over (the most recent ones).
	pageLoadSamples = 256
	// PageLoadMinThroughputBytes is the least body an answer must send
	// for its transfer time to count in a route's client throughput:
	// smaller answers fit in the sockets' buffers and their "transfer"
	// says nothing of the client's link.
	PageLoadMinThroughputBytes = 64 << 10
)

// PageLoadSample is one finished request as the report reads it.
type PageLoadSample struct {
	Group, Route string
	// Cache is the cache's result: "hit", "miss", "stored" (a miss whose
	// answer was stored) or "" (not looked up).
	Cache string
	// BodyBytes is the answer's body before compression, SentBytes what
	// was sent to the client.
	BodyBytes, SentBytes int64
	// TargetTime is the target's time to first byte plus its body's
	// transfer (zero for a hit); ClientTime is how long the answer's body
	// took to reach the client's socket (for a hit its whole time).
	TargetTime, ClientTime time.Duration
}

// PageLoadRoute is one route's row of the report.
type PageLoadRoute struct {
	Key          Key
	Hits, Misses int64
	// BodyBytes and SentBytes are the answers' bodies before compression
	// and as sent.
	BodyBytes, SentBytes int64
	// TargetMedian is the median TargetTime of the route's answers that
	// were stored (the target's time for a cacheable answer, which each
	// hit saves); zero when none was seen.
	TargetMedian time.Duration
	// Throughput is the route's observed client throughput in bytes per
	// second (SentBytes over ClientTime of the answers of at least
	// PageLoadMinThroughputBytes); zero when none was measured.
	Throughput float64
	// SavedByCache is Hits x TargetMedian; SavedByCompression is
	// (BodyBytes - SentBytes) / Throughput (zero without a throughput);
	// Saved is their sum. Estimates, not measurements.
	SavedByCache, SavedByCompression, Saved time.Duration
}

// HitRatio is Hits over the lookups, 0 without any.
func (r PageLoadRoute) HitRatio() float64 {
	if n := r.Hits + r.Misses; n > 0 {
		return float64(r.Hits) / float64(n)
	}
	return 0
}

// CompressionRatio is SentBytes over BodyBytes, 1 without a body.
func (r PageLoadRoute) CompressionRatio() float64 {
	if r.BodyBytes > 0 {
		return float64(r.SentBytes) / float64(r.BodyBytes)
	}
	return 1
}

// pageRoute is one route's counts.
type pageRoute struct {
	hits, misses   int64
	body, sent     int64
	thruBytes      int64
	thruTime       time.Duration
	targets        [pageLoadSamples]time.Duration
	nTargets, next int
}

// PageLoad keeps the page-load report's counts. Safe for concurrent use;
// Record takes one short lock and never allocates once a route's row
// exists.
type PageLoad struct {
	since time.Time

	mu     sync.Mutex
	routes map[Key]*pageRoute
}

// NewPageLoad returns an empty keeper whose counts start at now.
func NewPageLoad(now time.Time) *PageLoad {
	return &PageLoad{since: now, routes: map[Key]*pageRoute{}}
}

// Since is when the counts started.
func (p *PageLoad) Since() time.Time { return p.since }

// Record counts one request. Requests that were not looked up in a cache
// and had no body are not counted.
func (p *PageLoad) Record(s PageLoadSample) {
	if s.Cache == "" && s.BodyBytes == 0 && s.SentBytes == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := Key{Group: s.Group, Route: s.Route}
	r := p.routes[k]
	if r == nil {
		if len(p.routes) >= pageLoadMaxRoutes {
			k.Route = OtherRoute
			r = p.routes[k]
		}
		if r == nil {
			r = &pageRoute{}
			p.routes[k] = r
		}
	}
	switch s.Cache {
	case "hit":
		r.hits++
	case "miss", "stored":
		r.misses++
	}
	if s.Cache == "stored" {
		r.targets[r.next] = s.TargetTime
		r.next = (r.next + 1) % pageLoadSamples
		r.nTargets = min(r.nTargets+1, pageLoadSamples)
	}
	r.body += s.BodyBytes
	r.sent += s.SentBytes
	if s.SentBytes >= PageLoadMinThroughputBytes && s.ClientTime > 0 {
		r.thruBytes += s.SentBytes
		r.thruTime += s.ClientTime
	}
}

// Report returns every route's row, the most time saved first.
func (p *PageLoad) Report() []PageLoadRoute {
	p.mu.Lock()
	out := make([]PageLoadRoute, 0, len(p.routes))
	var ts []time.Duration
	for k, r := range p.routes {
		row := PageLoadRoute{Key: k, Hits: r.hits, Misses: r.misses, BodyBytes: r.body, SentBytes: r.sent}
		if r.nTargets > 0 {
			ts = append(ts[:0], r.targets[:r.nTargets]...)
			slices.Sort(ts)
			row.TargetMedian = ts[len(ts)/2]
		}
		if r.thruTime > 0 {
			row.Throughput = float64(r.thruBytes) / r.thruTime.Seconds()
		}
		out = append(out, row)
	}
	p.mu.Unlock()
	for i := range out {
		r := &out[i]
		r.SavedByCache = time.Duration(r.Hits) * r.TargetMedian
		if saved := r.BodyBytes - r.SentBytes; saved > 0 && r.Throughput > 0 {
			r.SavedByCompression = time.Duration(float64(saved) / r.Throughput * float64(time.Second))
		}
		r.Saved = r.SavedByCache + r.SavedByCompression
	}
	slices.SortFunc(out, func(a, b PageLoadRoute) int {
		return cmp.Or(cmp.Compare(b.Saved, a.Saved), cmp.Compare(a.Key.Group, b.Key.Group), cmp.Compare(a.Key.Route, b.Key.Route))
	})
	return out
}
