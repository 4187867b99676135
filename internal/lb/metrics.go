package lb

import (
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the balancer's Prometheus series, in a registry it owns.
// Hot-path series are resolved once per (route, target) and cached, so a
// request costs a map read under a read lock, not a label hash.
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

	mu     sync.Mutex
	routes map[[2]string]*routeMetrics // by (route, pool)
	hists  map[string]*latencyHist     // by pool, kept across reloads
}

// routeMetrics caches the series of one route.
type routeMetrics struct {
	route, pool string
	dur         prometheus.Observer
	heldDur     prometheus.Observer
	m           *metrics
	mu          sync.Mutex // serialises additions to byTarget
	// byTarget maps a target to its counters (index: status class 0-5).
	// Copied on write, so a request reads it without a lock.
	byTarget atomic.Pointer[map[string]*[6]prometheus.Counter]
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
	m := &metrics{b: b, reg: prometheus.NewRegistry(), routes: map[[2]string]*routeMetrics{}, hists: map[string]*latencyHist{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_lb_requests_total",
		Help: "Requests answered, by route, pool, target and status class (1xx-5xx; \"none\" when no status was sent).",
	}, []string{"route", "pool", "target", "code_class"})
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
	m.reg.MustRegister(m.requests, m.duration, m.ttfb, m.retries, m.ws, m.held, m.heldDur, poolCollector{b})
	return m
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
}

// forRoute returns the cached series of a route (created on first use,
// kept across reloads).
func (m *metrics) forRoute(route, pool string) *routeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{route, pool}
	rm := m.routes[k]
	if rm == nil {
		rm = &routeMetrics{route: route, pool: pool, m: m, dur: m.duration.WithLabelValues(route), heldDur: m.heldDur.WithLabelValues(route)}
		rm.byTarget.Store(&map[string]*[6]prometheus.Counter{})
		m.routes[k] = rm
	}
	return rm
}

var classNames = [6]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

func (rm *routeMetrics) counter(target string, status int) prometheus.Counter {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	cs := (*rm.byTarget.Load())[target]
	if cs == nil {
		rm.mu.Lock()
		old := *rm.byTarget.Load()
		if cs = old[target]; cs == nil {
			cs = new([6]prometheus.Counter)
			for i := range cs {
				cs[i] = rm.m.requests.WithLabelValues(rm.route, rm.pool, target, classNames[i])
			}
			next := make(map[string]*[6]prometheus.Counter, len(old)+1)
			for k, v := range old {
				next[k] = v
			}
			next[target] = cs
			rm.byTarget.Store(&next)
		}
		rm.mu.Unlock()
	}
	return cs[class]
}

// observe records a finished exchange. A held-open one leaves the open
// gauge and goes to the held-duration histogram, never to the latency
// ones.
func (m *metrics) observe(ex *exchange, d time.Duration) {
	rm := m.noRoute()
	if ex.route != nil {
		rm = ex.route.m
	}
	rm.counter(ex.target, ex.status).Inc()
	if ex.held {
		ex.heldPool.held.Dec()
		ex.heldPool.lat.held.Add(-1)
		rm.heldDur.Observe(d.Seconds())
		return
	}
	rm.dur.Observe(d.Seconds())
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

// poolCollector reads pool state at scrape time.
type poolCollector struct{ b *Balancer }

var (
	descInFlight = prometheus.NewDesc("shoal_lb_in_flight", "Requests and tunnels in flight to the pool's targets.", []string{"pool"}, nil)
	descHealthy  = prometheus.NewDesc("shoal_lb_healthy_targets", "Targets of the pool in the healthy state.", []string{"pool"}, nil)
	descFailOpen = prometheus.NewDesc("shoal_lb_fail_open", "1 when no target of the pool is healthy and requests go to all of them.", []string{"pool"}, nil)
	descEjected  = prometheus.NewDesc("shoal_lb_ejections_total", "Passive ejections of a target since it was added.", []string{"pool", "target"}, nil)
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
			ch <- prometheus.MustNewConstMetric(descEjected, prometheus.CounterValue, float64(t.Ejections), st.Name, t.Addr)
		}
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
