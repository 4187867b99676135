package lb

import (
	"sync/atomic"
	"time"
)

// RequestObserver receives one record per finished proxied request (and
// per ended WebSocket tunnel), from both the fast HTTP/1.1 path and the
// net/http path. ObserveRequest is called on the request's goroutine after
// the response is complete, so it must be fast and must not block; it may
// be called concurrently. The record is reused after it returns: copy
// what you keep.
type RequestObserver interface {
	ObserveRequest(r *RequestRecord)
}

// RequestRecord describes one finished request. Durations are measured at
// the balancer:
//
//	Start ─ Queue ─> request written upstream ─ TTFB ─> response headers ─ Transfer ─> last byte
//
// Queue covers routing, picking, connecting and earlier failed attempts
// (retries); Total is the whole span. A request answered by the balancer
// itself (404, 503, 502 ...) has the phases it did not reach left zero.
type RequestRecord struct {
	Start     time.Time
	RequestID string
	Method    string
	Host      string // as sent by the client, maybe with a port
	Path      string // without the query
	Route     string // "" when no route matched
	Pool      string
	Target    string // last target tried; "" when none was
	// Status is the status sent to the client; 0 if no response was
	// written (the client went away first).
	Status   int
	BytesOut int64 // response body bytes written to the client
	Retries  int
	Total    time.Duration
	Queue    time.Duration
	TTFB     time.Duration
	Transfer time.Duration
	// Err is the failure that ended or marred the request; "" on success.
	Err string
	// Held is set when the server held the exchange open on purpose (a
	// long poll, a stream, server-sent events, a route marked long-lived):
	// Total is then how long it stayed open, not a latency, and it is left
	// out of LatencyHistogram. WebSocket tunnels are not marked Held.
	Held bool
	// RTT is the client connection's round-trip time when the request
	// ended (the kernel's smoothed estimate, TCP_INFO), and RTTMin the
	// lowest sample the kernel kept: the network's share, which the
	// balancer's own phases do not see (the request's way in happens
	// before Start, the answer's way out after Total). Zero when not
	// known.
	RTT, RTTMin time.Duration

	// The asset cache's and compression's part (the page-load report):
	// Cache is "hit" (served from the route's cache), "miss" (looked up,
	// sent to a target), "stored" (a miss whose answer was stored), or ""
	// (not looked up). BodyBytes is the answer's body before compression
	// (as the target sent it, or the cached identity body); BytesOut is
	// what was sent.
	Cache     string
	BodyBytes int64
}

// observerBox lets a nil interface be stored atomically.
type observerBox struct{ o RequestObserver }

func (b *Balancer) setObserver(o RequestObserver) {
	if o == nil {
		b.obs.Store(nil)
		return
	}
	b.obs.Store(&observerBox{o})
}

// observer returns the current observer or nil.
func (b *Balancer) observer() RequestObserver {
	if ob := b.obs.Load(); ob != nil {
		return ob.o
	}
	return nil
}

// latencyHist is a fixed-bucket histogram of request durations kept with
// atomic counters: recording is two atomic adds, no lock.
type latencyHist struct {
	counts [len(latencyBuckets) + 1]atomic.Uint64 // last: above the largest bound
	// held counts the pool's held-open exchanges now open (HeldOpen).
	held atomic.Int64
}

func (h *latencyHist) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
}

// LatencyHistogram returns the distribution of total request durations
// (headers read to last byte, seconds) of the requests routed to the named
// pool since a pool of that name was first created (a reload that rebuilds the pool keeps counting), for the autoscaler. bounds are
// the upper bounds of the buckets; counts has len(bounds)+1 entries, each
// the number of requests in that bucket alone (not cumulative), the last
// one those above the largest bound. Requests answered without a target
// (503 when none is available) count too: they are latency the pool's
// clients saw. WebSocket tunnels and held-open exchanges (long polls,
// streams, server-sent events, long-lived routes: see RequestRecord.Held)
// are not counted: their duration is chosen by the server, not a
// latency, and would drive latency autoscaling policies to the pool's
// maximum. Both slices are fresh
// copies; an unknown pool gives nil, nil. Safe for concurrent use.
//
// Per-target request counts and in-flight requests are in Pool(name).Status().
func (b *Balancer) LatencyHistogram(pool string) (bounds []float64, counts []uint64) {
	b.mu.Lock()
	pe := b.pools[pool]
	b.mu.Unlock()
	if pe == nil {
		return nil, nil
	}
	h := pe.m.lat
	bounds = append([]float64(nil), latencyBuckets[:]...)
	counts = make([]uint64, len(h.counts))
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
	}
	return bounds, counts
}

// HeldOpen returns how many held-open exchanges (long polls, streams,
// server-sent events, requests of long-lived routes; see
// RequestRecord.Held) of the named pool are open now; 0 for an unknown
// pool. Like LatencyHistogram it follows the pool by name across reloads.
// Safe for concurrent use.
func (b *Balancer) HeldOpen(pool string) int {
	b.mu.Lock()
	pe := b.pools[pool]
	b.mu.Unlock()
	if pe == nil {
		return 0
	}
	return int(pe.m.lat.held.Load())
}
