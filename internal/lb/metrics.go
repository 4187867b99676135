package lb

import (
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-dev/shoal/internal/pool"
)

// metrics are the balancer's Prometheus series, in a registry it owns.
// Hot-path series are resolved once per (route, status code) and cached,
// so a request costs an atomic load, not a label hash.
//
// No label takes a value per target: a target is an instance's address,
// a new one with every deploy, so such series would grow without bound
// (Envoy's cluster stats are per cluster for the same reason). Per-target
// state is in the pool's status (admin API) and the access log.
type metrics struct {
	b        *Balancer
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	ttfb     *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	ws       *prometheus.GaugeVec
	held     *prometheus.GaugeVec
	heldDur  *prometheus.HistogramVec
	// rtt and listenerRTT: the client connection's round-trip time
	// (rtt.go), by route and by listener.
	rtt         *prometheus.HistogramVec
	listenerRTT *prometheus.HistogramVec
	tlsFail     *prometheus.CounterVec // by pool and reason (targettls.go)
	cache       *cacheMetrics          // cachemetrics.go

	mu     sync.Mutex
	routes map[[2]string]*routeMetrics // by (route, pool)
	hists  map[string]*latencyHist     // by pool, kept across reloads
	// listeners by name, kept across reloads (rtt.go).
	listeners map[string]*listenerMetrics

	ejections ejectionTally
}

// routeMetrics caches the series of one route. Its series are made at
// the route's first finished request, not with the route: a balancer
// with 10,000 host routes of which a few serve at a time pays for the
// few (issue 15: memory per route), and a route that never served has no
// series on /metrics, as a status code that was never sent has none.
type routeMetrics struct {
	route, pool string
	m           *metrics
	s           atomic.Pointer[routeSeries]
}

// histBox boxes a histogram for an atomic.Pointer.
type histBox struct{ o prometheus.Observer }

// held returns the route's held-duration histogram, made on first use.
func (rm *routeMetrics) held(rs *routeSeries) prometheus.Observer {
	if h := rs.heldDur.Load(); h != nil {
		return h.o
	}
	rs.heldDur.CompareAndSwap(nil, &histBox{rm.m.heldDur.WithLabelValues(rm.route)})
	return rs.heldDur.Load().o
}

// routeSeries are the series of a route that has served.
type routeSeries struct {
	dur prometheus.Observer
	// heldDur is made at the route's first held-open request: most
	// routes never hold one.
	heldDur atomic.Pointer[histBox]
	rtt     prometheus.Observer
	t       timing // for Status (rtt.go)
	cache   *routeCacheSeries
	// codes holds the request counter of each status code the route has
	// answered (code 0: none was sent), created on first use. A route
	// answers a handful of codes, so a short list scanned in order costs
	// less than an array indexed by every possible code (4.8 KB a route).
	codes   atomic.Pointer[[]codeCounter]
	codesMu sync.Mutex // serialises additions to codes
}

// series returns the route's series, made on the first call. Two first
// calls at once may both build one; one wins and the other is dropped
// (WithLabelValues returned the same children to both).
func (rm *routeMetrics) series() *routeSeries {
	if s := rm.s.Load(); s != nil {
		return s
	}
	m := rm.m
	s := &routeSeries{dur: m.duration.WithLabelValues(rm.route),
		rtt: m.rtt.WithLabelValues(rm.route), cache: m.cache.forRoute(rm.route)}
	if !rm.s.CompareAndSwap(nil, s) {
		s = rm.s.Load()
	}
	return s
}

// codeCounter is a status code's request counter.
type codeCounter struct {
	code int
	c    prometheus.Counter
}

// poolMetrics caches the series of one pool.
type poolMetrics struct {
	ttfb    prometheus.Observer
	retries prometheus.Counter
	ws      prometheus.Gauge
	held    prometheus.Gauge
	lat     *latencyHist
}

var latencyBuckets = [...]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// heldBuckets bound the durations of held-open exchanges: a poll answered
// at once up to a stream that lasts an hour.
var heldBuckets = [...]float64{.1, 1, 5, 10, 25, 30, 60, 120, 300, 600, 1800, 3600}

func newMetrics(b *Balancer) *metrics {
	m := &metrics{b: b, reg: prometheus.NewRegistry(), routes: map[[2]string]*routeMetrics{}, hists: map[string]*latencyHist{}, listeners: map[string]*listenerMetrics{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_lb_requests_total",
		Help: "Requests answered, by route, pool and status code (\"none\" when no status was sent).",
	}, []string{"route", "pool", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shoal_lb_request_duration_seconds",
		Help:    "Total request duration at the balancer, from headers read to the last byte (WebSockets: the tunnel's lifetime). Held-open exchanges (long polls, streams, server-sent events) are in shoal_lb_held_duration_seconds instead.",
		Buckets: latencyBuckets[:],
	}, []string{"route"})
	m.ttfb = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shoal_lb_upstream_ttfb_seconds",
		Help:    "Time from sending a request to a target to its response headers.",
		Buckets: latencyBuckets[:],
	}, []string{"pool"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_lb_retries_total",
		Help: "Attempts retried on another target.",
	}, []string{"pool"})
	m.ws = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shoal_lb_websockets_open",
		Help: "Upgraded connections (WebSockets) open through the balancer.",
	}, []string{"pool"})
	m.held = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shoal_lb_held_open",
		Help: "Held-open exchanges (long polls, streams, server-sent events; not WebSockets) open through the balancer.",
	}, []string{"pool"})
	m.heldDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shoal_lb_held_duration_seconds",
		Help:    "Duration of held-open exchanges (long polls, streams, server-sent events), from headers read to the last byte; they are not in shoal_lb_request_duration_seconds.",
		Buckets: heldBuckets[:],
	}, []string{"route"})
	m.rtt = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shoal_lb_client_rtt_seconds",
		Help:    "Round-trip time of the client's TCP connection (the kernel's smoothed estimate, TCP_INFO) when each request ended, by route: the network's share beside the app's time in shoal_lb_upstream_ttfb_seconds.",
		Buckets: rttBuckets[:],
	}, []string{"route"})
	m.listenerRTT = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shoal_lb_listener_client_rtt_seconds",
		Help:    "Round-trip time of the client's TCP connection (the kernel's smoothed estimate, TCP_INFO) when each request ended, by listener.",
		Buckets: rttBuckets[:],
	}, []string{"listener"})
	m.tlsFail = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_lb_target_tls_failures_total",
		Help: "Failed TLS connections to the targets of TLS pools, by reason: handshake (refused, unverified, timed out) or alpn (an h2 pool's target did not agree to HTTP/2).",
	}, []string{"pool", "reason"})
	m.reg.MustRegister(m.requests, m.duration, m.ttfb, m.retries, m.ws, m.held, m.heldDur, m.rtt, m.listenerRTT, m.tlsFail, poolCollector{b})
	m.cache = newCacheMetrics(m.reg)
	return m
}

// tlsFailure returns the counter of a pool's failed TLS connections to
// its targets by reason: "handshake" (no TLS session: refused,
// unverified certificate, timeout) or "alpn" (an h2 pool's target did
// not agree to HTTP/2).
func (m *metrics) tlsFailure(pool string) func(reason string) {
	return func(reason string) { m.tlsFail.WithLabelValues(pool, reason).Inc() }
}

func (m *metrics) forPool(name string) *poolMetrics {
	return &poolMetrics{
		ttfb:    m.ttfb.WithLabelValues(name),
		retries: m.retries.WithLabelValues(name),
		ws:      m.ws.WithLabelValues(name),
		held:    m.held.WithLabelValues(name),
		lat:     m.hist(name),
	}
}

// hist returns the latency histogram of a pool by name, created on first
// use and kept for the balancer's life, so that a pool rebuilt by a
// reload keeps counting.
func (m *metrics) hist(pool string) *latencyHist {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hists[pool]
	if h == nil {
		h = new(latencyHist)
		m.hists[pool] = h
	}
	return h
}

// dropPool deletes the per-pool series of a removed pool.
func (m *metrics) dropPool(pe *poolEntry) {
	n := pe.cfg.Name
	m.ttfb.DeleteLabelValues(n)
	m.retries.DeleteLabelValues(n)
	m.ws.DeleteLabelValues(n)
	m.held.DeleteLabelValues(n)
	m.tlsFail.DeletePartialMatch(prometheus.Labels{"pool": n})
}

// forRoute returns the cached series of a route (created on first use,
// kept across reloads).
func (m *metrics) forRoute(route, pool string) *routeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{route, pool}
	rm := m.routes[k]
	if rm == nil {
		rm = &routeMetrics{route: route, pool: pool, m: m}
		m.routes[k] = rm
	}
	return rm
}

// counter returns the request counter of status, created on first use.
// Two first uses at once get the same series (WithLabelValues returns the
// existing child).
func (rm *routeMetrics) counter(status int) prometheus.Counter {
	rs := rm.series()
	if status < 100 || status >= 600 {
		status = 0
	}
	if c := rs.findCode(status); c != nil {
		return c
	}
	rs.codesMu.Lock()
	defer rs.codesMu.Unlock()
	if c := rs.findCode(status); c != nil {
		return c
	}
	code := "none"
	if status != 0 {
		code = strconv.Itoa(status)
	}
	c := rm.m.requests.WithLabelValues(rm.route, rm.pool, code)
	var next []codeCounter
	if cur := rs.codes.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, codeCounter{status, c})
	rs.codes.Store(&next)
	return c
}

// findCode returns the counter of status, nil when it has none yet.
func (rs *routeSeries) findCode(status int) prometheus.Counter {
	if cur := rs.codes.Load(); cur != nil {
		for _, cc := range *cur {
			if cc.code == status {
				return cc.c
			}
		}
	}
	return nil
}

// observe records a finished exchange. A held-open one leaves the open
// gauge and goes to the held-duration histogram, never to the latency
// ones.
func (m *metrics) observe(ex *exchange, d time.Duration) {
	rm := m.noRoute()
	if ex.route != nil {
		rm = ex.route.m
	}
	rs := rm.series()
	rm.counter(ex.status).Inc()
	m.observeRTT(rs, ex)
	rs.cache.observe(ex)
	if ex.held {
		ex.heldPool.held.Dec()
		ex.heldPool.lat.held.Add(-1)
		rm.held(rs).Observe(d.Seconds())
		return
	}
	rs.dur.Observe(d.Seconds())
	if ex.route != nil && !ex.websocket {
		ex.route.pool.m.lat.observe(d)
	}
}

func (m *metrics) noRoute() *routeMetrics { return m.forRoute("", "") }

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// MetricsHandler serves the balancer's own Prometheus registry (not the
// global one): request counts and latencies, retries, open WebSockets,
// open held-open exchanges and their durations, and per-pool gauges read
// from the pools at scrape time.
func (b *Balancer) MetricsHandler() http.Handler { return b.metrics.handler() }

// Metrics returns the balancer's own Prometheus registry (the series
// MetricsHandler serves), for a handler that serves them with others.
func (b *Balancer) Metrics() prometheus.Gatherer { return b.metrics.reg }

// poolCollector reads pool state at scrape time.
type poolCollector struct{ b *Balancer }

// ejectionTally turns the pools' per-target ejection counts (each since
// its target was added) into one monotonic count per pool: the counts of
// targets seen at an earlier scrape and gone since are kept in gone. An
// ejection of a target after the last scrape that saw it is not counted.
type ejectionTally struct {
	mu    sync.Mutex
	pools map[string]*poolEjections
}

type poolEjections struct {
	gone int64
	seen map[string]int64 // by target address: its count at the last scrape
}

// total records the current per-target counts of the pool named name and returns its
// count of ejections since the balancer started.
func (et *ejectionTally) total(name string, targets []pool.TargetStatus) int64 {
	et.mu.Lock()
	defer et.mu.Unlock()
	if et.pools == nil {
		et.pools = map[string]*poolEjections{}
	}
	pe := et.pools[name]
	if pe == nil {
		pe = &poolEjections{seen: map[string]int64{}}
		et.pools[name] = pe
	}
	now := make(map[string]int64, len(targets))
	var sum int64
	for _, t := range targets {
		n := t.Ejections
		if prev, ok := pe.seen[t.Addr]; ok && n < prev {
			pe.gone += prev // removed and added again since the last scrape
		}
		now[t.Addr] = n
		sum += n
	}
	for addr, n := range pe.seen {
		if _, ok := now[addr]; !ok {
			pe.gone += n
		}
	}
	pe.seen = now
	return pe.gone + sum
}

var (
	descInFlight = prometheus.NewDesc("shoal_lb_in_flight", "Requests and tunnels in flight to the pool's targets.", []string{"pool"}, nil)
	descHealthy  = prometheus.NewDesc("shoal_lb_healthy_targets", "Targets of the pool in the healthy state.", []string{"pool"}, nil)
	descFailOpen = prometheus.NewDesc("shoal_lb_fail_open", "1 when no target of the pool is healthy and requests go to all of them.", []string{"pool"}, nil)
	descEjected  = prometheus.NewDesc("shoal_lb_ejections_total", "Passive ejections of the pool's targets since the balancer started.", []string{"pool"}, nil)
	descTargets  = prometheus.NewDesc("shoal_lb_targets", "Targets of the pool by state.", []string{"pool", "state"}, nil)
)

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descInFlight
	ch <- descHealthy
	ch <- descFailOpen
	ch <- descEjected
	ch <- descTargets
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, pe := range c.b.poolEntries() {
		st := pe.p.Status()
		var inflight int64
		states := map[string]int{"healthy": 0, "unhealthy": 0, "ejected": 0, "draining": 0}
		for _, t := range st.Targets {
			inflight += t.InFlight
			states[t.State]++
		}
		ch <- prometheus.MustNewConstMetric(descEjected, prometheus.CounterValue, float64(c.b.metrics.ejections.total(st.Name, st.Targets)), st.Name)
		fo := 0.0
		if st.FailOpen {
			fo = 1
		}
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(inflight), st.Name)
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, float64(st.Healthy), st.Name)
		ch <- prometheus.MustNewConstMetric(descFailOpen, prometheus.GaugeValue, fo, st.Name)
		for s, n := range states {
			ch <- prometheus.MustNewConstMetric(descTargets, prometheus.GaugeValue, float64(n), st.Name, s)
		}
	}
}

// poolEntries returns the current pools, sorted by name.
func (b *Balancer) poolEntries() []*poolEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*poolEntry, 0, len(b.pools))
	for _, pe := range b.pools {
		out = append(out, pe)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cfg.Name < out[j].cfg.Name })
	return out
}
