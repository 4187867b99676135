package lb

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/netpoll"
)

// The network's share of a request (issue 17). When an exchange ends, the
// balancer reads its client connection's round-trip time from the kernel
// (TCP_INFO, netpoll.TCPRTT): one getsockopt per request, with no
// allocation, on the fast path from the loop's descriptor (evClient.
// readRTT), on the net/http path through the connection's RawConn
// (connInfo.readRTT). Read at the end, the estimate includes the samples
// of the answer's own segments and their ACKs. It goes to the access log
// ("rtt_ms"), the observer (RequestRecord.RTT), the Prometheus histograms
// shoal_lb_client_rtt_seconds{route} and
// shoal_lb_listener_client_rtt_seconds{listener}, and the per-route and
// per-listener timing that Status reports beside the app's time (the
// target's time to first byte).

// rttBuckets bound client round-trip times, from a LAN's 0.1 ms to a
// congested satellite link's seconds.
var rttBuckets = [...]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// timingBounds are the upper bounds of the buckets of a durHist, in
// steps of 1-2-5: enough resolution for p50 and p95 in Status.
var timingBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}

// durHist is a fixed-bucket histogram of durations with atomic counters,
// for quantiles computed in the process.
type durHist struct {
	counts [len(timingBounds) + 1]atomic.Uint64 // last: above the largest bound
}

func (h *durHist) observe(d time.Duration) {
	i := 0
	for i < len(timingBounds) && d > timingBounds[i] {
		i++
	}
	h.counts[i].Add(1)
}

// quantile returns the q-quantile (0 < q < 1) of the recorded durations,
// interpolated linearly inside its bucket (the largest bound for those
// above it), and how many durations were recorded; 0, 0 when none were.
func (h *durHist) quantile(q float64) (time.Duration, uint64) {
	var c [len(timingBounds) + 1]uint64
	var n uint64
	for i := range h.counts {
		c[i] = h.counts[i].Load()
		n += c[i]
	}
	if n == 0 {
		return 0, 0
	}
	rank := q * float64(n)
	var seen float64
	for i, k := range c {
		if k == 0 {
			continue
		}
		if seen+float64(k) >= rank {
			if i == len(timingBounds) {
				return timingBounds[len(timingBounds)-1], n
			}
			lo := time.Duration(0)
			if i > 0 {
				lo = timingBounds[i-1]
			}
			f := (rank - seen) / float64(k)
			return lo + time.Duration(f*float64(timingBounds[i]-lo)), n
		}
		seen += float64(k)
	}
	return timingBounds[len(timingBounds)-1], n
}

// timing is where the time of one route's or one listener's exchanges
// went, since the balancer started, for Status: the app's time (the
// target's time to first byte) of requests that reached a target and
// were not held open or tunnelled, and the client connection's
// round-trip time of every exchange that had one.
type timing struct {
	requests atomic.Int64
	app, rtt durHist
}

func (t *timing) observe(ex *exchange) {
	t.requests.Add(1)
	if ex.rtt.Smoothed > 0 {
		t.rtt.observe(ex.rtt.Smoothed)
	}
	if ex.ttfb > 0 && !ex.held && !ex.websocket {
		t.app.observe(ex.ttfb)
	}
}

// report is t as the wire type; nil when nothing was recorded.
func (t *timing) report() *api.RequestTiming {
	n := t.requests.Load()
	if n == 0 {
		return nil
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r := &api.RequestTiming{Requests: n}
	var k uint64
	var p50, p95 time.Duration
	if p50, k = t.app.quantile(0.50); k > 0 {
		p95, _ = t.app.quantile(0.95)
		r.AppSamples, r.AppP50MS, r.AppP95MS = int64(k), ms(p50), ms(p95)
	}
	if p50, k = t.rtt.quantile(0.50); k > 0 {
		p95, _ = t.rtt.quantile(0.95)
		r.RTTSamples, r.RTTP50MS, r.RTTP95MS = int64(k), ms(p50), ms(p95)
	}
	return r
}

// listenerMetrics are the series of one listener, resolved once when its
// server is built and carried by each exchange (exchange.lm).
type listenerMetrics struct {
	rtt prometheus.Observer
	t   timing
}

// forListener returns the series of the named listener, created on first
// use and kept for the balancer's life (a reload that keeps the name keeps
// counting).
func (m *metrics) forListener(name string) *listenerMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	lm := m.listeners[name]
	if lm == nil {
		lm = &listenerMetrics{rtt: m.listenerRTT.WithLabelValues(name)}
		m.listeners[name] = lm
	}
	return lm
}

// observeRTT records ex's round-trip time and timing for its route and
// listener.
func (m *metrics) observeRTT(rm *routeSeries, ex *exchange) {
	if s := ex.rtt.Smoothed; s > 0 {
		rm.rtt.Observe(s.Seconds())
		if ex.lm != nil {
			ex.lm.rtt.Observe(s.Seconds())
		}
	}
	rm.t.observe(ex)
	if ex.lm != nil {
		ex.lm.t.observe(ex)
	}
}

// routeTiming and listenerTiming return the timing of a route (by name
// and pool) and a listener for Status; nil when none was recorded.
func (m *metrics) routeTiming(route, pool string) *api.RequestTiming {
	m.mu.Lock()
	rm := m.routes[[2]string{route, pool}]
	m.mu.Unlock()
	if rm == nil {
		return nil
	}
	rs := rm.s.Load()
	if rs == nil {
		return nil
	}
	return rs.t.report()
}

func (m *metrics) listenerTiming(name string) *api.RequestTiming {
	m.mu.Lock()
	lm := m.listeners[name]
	m.mu.Unlock()
	if lm == nil {
		return nil
	}
	return lm.t.report()
}

// readRTT reads the round-trip time of the loop's client connection into
// its exchange; an error (the socket is gone) leaves it unknown.
func (c *evClient) readRTT() {
	c.ex.rtt, _ = netpoll.TCPRTT(c.fd)
}

// connInfo is what the net/http path keeps of an accepted connection
// (http.Server.ConnContext, withConn): the connection, and the means to
// read its round-trip time with no allocation per request. HTTP/2
// streams of one connection end concurrently, hence the lock.
type connInfo struct {
	conn net.Conn
	raw  syscall.RawConn // of the TCP socket under conn; nil if there is none
	read func(fd uintptr)
	// stream, for an HTTP/2 stream the loops hand to the handler
	// (h2Fallback), returns the round-trip time the loop read last; conn
	// and raw are nil then.
	stream func() netpoll.RTT

	mu  sync.Mutex
	rtt netpoll.RTT
}

// withConn is http.Server.ConnContext: it makes the accepted connection
// (a *guardConn for HTTP/1, a *tls.Conn for HTTP/2) and its round-trip
// time reachable from the request.
func withConn(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{conn: c}
	if sc, ok := tcpConnOf(c).(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			ci.raw = raw
			ci.read = ci.readFD
		}
	}
	return context.WithValue(ctx, connKey{}, ci)
}

// connOf returns the connection info of a request of the net/http path;
// nil when it has none (a request not from a listener's server).
func connOf(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connKey{}).(*connInfo)
	return ci
}

// tcpConnOf unwraps the balancer's own connection wrappers (the smuggling
// guard, TLS, the fast path's hand-over and the connection limit) down to
// the accepted socket's connection.
func tcpConnOf(c net.Conn) net.Conn {
	for range 8 { // the wrappers nest a few deep at most
		switch w := c.(type) {
		case *guardConn:
			c = w.Conn
		case *tls.Conn:
			c = w.NetConn()
		case *prefixConn:
			c = w.Conn
		case *recConn:
			c = w.Conn
		case *tlsPipe:
			if w.conn == nil {
				return c // on a loop: no net.Conn
			}
			c = w.conn
		case *limitConn:
			c = w.Conn
		default:
			return c
		}
	}
	return c
}

// readRTT returns the connection's round-trip time now; the zero RTT when
// it is not known (no TCP socket under the connection, or it is closed).
func (ci *connInfo) readRTT() netpoll.RTT {
	if ci != nil && ci.stream != nil {
		return ci.stream()
	}
	if ci == nil || ci.raw == nil {
		return netpoll.RTT{}
	}
	ci.mu.Lock()
	defer ci.mu.Unlock()
	ci.rtt = netpoll.RTT{}
	ci.raw.Control(ci.read)
	return ci.rtt
}

func (ci *connInfo) readFD(fd uintptr) {
	ci.rtt, _ = netpoll.TCPRTT(int(fd))
}

// guarded returns the smuggling guard of the connection (HTTP/1); false
// for HTTP/2 or a nil ci.
func (ci *connInfo) guarded() (*guardConn, bool) {
	if ci == nil {
		return nil, false
	}
	g, ok := ci.conn.(*guardConn)
	return g, ok
}
