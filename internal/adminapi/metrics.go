package adminapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves GET /metrics: the series of each gatherer
// followed by the process's own, the Go runtime's (go_*: goroutines,
// heap, GC) and the process's (process_*: CPU seconds, resident memory,
// open file descriptors, start time), in a registry of their own so that
// no package-level state is shared between servers.
func metricsHandler(gs ...prometheus.Gatherer) http.Handler {
	proc := prometheus.NewRegistry()
	proc.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(append(prometheus.Gatherers(gs), proc), promhttp.HandlerOpts{})
}
