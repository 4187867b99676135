package controller

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// passBuckets are the bounds, in seconds, of the reconcile pass histogram:
// from 10 µs (a small group) to 1 s (far beyond anything healthy).
var passBuckets = []float64{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// passMetrics times the reconcile loop's passes: one decision of the
// reconciler (or one step of a rollout) and the start of its actions, not
// the actions themselves, which run in their own goroutines.
type passMetrics struct {
	reg      *prometheus.Registry
	duration prometheus.Histogram
}

func newPassMetrics() *passMetrics {
	m := &passMetrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_reconcile_pass_seconds",
			Help:    "Time of one pass of the controller's reconcile loop: observe, decide, start the actions (not their completion).",
			Buckets: passBuckets,
		}),
	}
	m.reg.MustRegister(m.duration)
	return m
}

// observe records a pass that began at start.
func (m *passMetrics) observe(start time.Time) { m.duration.Observe(time.Since(start).Seconds()) }
