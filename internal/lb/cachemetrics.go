package lb

import "github.com/prometheus/client_golang/prometheus"

// Series of the asset cache and of compression's effect, per route (the
// page-load report's counts, issue 18).
type cacheMetrics struct {
	lookups *prometheus.CounterVec
	bytes   *prometheus.CounterVec
}

// routeCacheSeries are one route's children, resolved once.
type routeCacheSeries struct {
	hit, miss    prometheus.Counter
	bodyIn, sent prometheus.Counter
}

func newCacheMetrics(reg *prometheus.Registry) *cacheMetrics {
	cm := &cacheMetrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_lb_cache_lookups_total",
			Help: "Requests looked up in a route's asset cache, by result: hit (served from the cache) or miss (sent to a target).",
		}, []string{"route", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_lb_body_bytes_total",
			Help: "Answer body bytes by stage: body (as the target sent it, or the cached identity body, before compression) and sent (to the client, after compression).",
		}, []string{"route", "stage"}),
	}
	reg.MustRegister(cm.lookups, cm.bytes)
	return cm
}

func (cm *cacheMetrics) forRoute(route string) *routeCacheSeries {
	return &routeCacheSeries{
		hit: cm.lookups.WithLabelValues(route, "hit"), miss: cm.lookups.WithLabelValues(route, "miss"),
		bodyIn: cm.bytes.WithLabelValues(route, "body"), sent: cm.bytes.WithLabelValues(route, "sent"),
	}
}

// observe counts a finished exchange's cache result and body bytes.
func (s *routeCacheSeries) observe(ex *exchange) {
	switch ex.cached {
	case cacheHit:
		s.hit.Inc()
	case cacheMiss, cacheStored:
		s.miss.Inc()
	}
	if ex.bodyIn > 0 {
		s.bodyIn.Add(float64(ex.bodyIn))
	}
	if ex.bytesOut > 0 {
		s.sent.Add(float64(ex.bytesOut))
	}
}
