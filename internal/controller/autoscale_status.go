package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/autoscale"
)

// The autoscale answer is the one vocabulary's (package api); these names
// keep the controller's callers reading as before.
type (
	// AutoscaleStatus is a point-in-time view of auto scaling.
	AutoscaleStatus = api.AutoscaleStatus
	// PolicyStatus is one policy's reading in AutoscaleStatus.
	PolicyStatus = api.AutoscalePolicy
	// AutoscaleChange is one change of the desired count by the autoscaler.
	AutoscaleChange = api.AutoscaleChange
)

// Autoscale returns the state of auto scaling. It never blocks on I/O.
func (c *Controller) Autoscale() AutoscaleStatus {
	c.mu.Lock()
	desired := c.group.Desired
	c.mu.Unlock()
	c.as.mu.Lock()
	defer c.as.mu.Unlock()
	s := c.as.scaler
	if s == nil {
		return AutoscaleStatus{Policies: []PolicyStatus{}}
	}
	cfg := s.Config()
	lo, hi := s.Limits()
	st := AutoscaleStatus{
		Enabled: true, Paused: s.Paused(), Min: lo, Max: hi, Desired: desired,
		IntervalSeconds: cfg.Interval.Seconds(), WindowSeconds: cfg.Window.Seconds(),
		StabilizationSeconds: cfg.Stabilization.Seconds(), WarmupSeconds: cfg.Warmup.Seconds(),
		Policies: []PolicyStatus{},
	}
	d := c.as.last
	if !d.Time.IsZero() {
		st.State, st.Held, st.EvaluatedAt = d.State.String(), d.Held, d.Time
	} else if s.Paused() {
		st.State = autoscale.Paused.String()
	}
	for i, p := range cfg.Policies {
		ps := PolicyStatus{Kind: p.Kind.String(), Metric: p.Metric.String(), Target: p.Target, Wants: desired, Name: p.Name}
		if ps.Name == "" {
			ps.Name = ps.Metric
		}
		if i < len(d.PerPolicy) {
			pv := d.PerPolicy[i]
			ps.Name, ps.Value, ps.OK, ps.Warm, ps.Wants, ps.Note = pv.Name, pv.Value, pv.OK, pv.Warm, pv.Wants, pv.Note
		}
		st.Policies = append(st.Policies, ps)
	}
	if ch := c.as.change; ch != nil {
		st.LastChange = &AutoscaleChange{Time: ch.Time, Direction: ch.Direction.String(), From: ch.Current, To: ch.Desired, Reason: ch.Reason}
	}
	return st
}

// autoscaleMetrics are the autoscaler's Prometheus series. A policy's
// value and target are in a family per unit (one unit per metric name):
// shoal_autoscale_policy_value_<unit> and shoal_autoscale_policy_target_<unit>,
// with the units of autoscale.Metric.Unit.
type autoscaleMetrics struct {
	reg     *prometheus.Registry
	value   map[string]*prometheus.GaugeVec // by unit
	target  map[string]*prometheus.GaugeVec // by unit
	desired prometheus.Gauge
	paused  prometheus.Gauge
}

// autoscaleUnits are the units of the autoscale metrics, with the phrase
// that says what is measured in it.
var autoscaleUnits = []struct{ unit, what string }{
	{"requests_per_second", "requests completed per second per instance (rps_per_instance)"},
	{"seconds", "request latency (latency_p95, latency_p99)"},
	{"requests", "requests in flight per instance (inflight_per_instance)"},
	{"cores", "CPU cores busy per instance (cpu)"},
}

func newAutoscaleMetrics() *autoscaleMetrics {
	m := &autoscaleMetrics{
		reg:    prometheus.NewRegistry(),
		value:  map[string]*prometheus.GaugeVec{},
		target: map[string]*prometheus.GaugeVec{},
		desired: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_autoscale_desired",
			Help: "Desired instance count after the last auto-scaling evaluation.",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_autoscale_paused",
			Help: "1 while auto scaling is paused.",
		}),
	}
	for _, u := range autoscaleUnits {
		m.value[u.unit] = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shoal_autoscale_policy_value_" + u.unit,
			Help: "Current value over the window of each auto-scaling policy on " + u.what + "; absent without data.",
		}, []string{"policy", "metric"})
		m.target[u.unit] = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shoal_autoscale_policy_target_" + u.unit,
			Help: "Target of each target-tracking auto-scaling policy on " + u.what + ".",
		}, []string{"policy", "metric"})
		m.reg.MustRegister(m.value[u.unit], m.target[u.unit])
	}
	m.reg.MustRegister(m.desired, m.paused)
	return m
}

// update records decision d. A nil m does nothing.
func (m *autoscaleMetrics) update(d autoscale.Decision) {
	if m == nil {
		return
	}
	for _, pv := range d.PerPolicy {
		value, target := m.value[pv.Metric.Unit()], m.target[pv.Metric.Unit()]
		if value == nil {
			continue // a metric without a unit here: a new autoscale.Metric needs a row in autoscaleUnits
		}
		l := prometheus.Labels{"policy": pv.Name, "metric": pv.Metric.String()}
		if pv.OK {
			value.With(l).Set(pv.Value)
		} else {
			value.Delete(l)
		}
		if pv.Kind == autoscale.TargetTracking {
			target.With(l).Set(pv.Target)
		}
	}
	m.desired.Set(float64(d.Desired))
	if d.State == autoscale.Paused {
		m.paused.Set(1)
	} else {
		m.paused.Set(0)
	}
}

// Metrics returns the controller's Prometheus series (auto scaling, the
// event log's write errors, pending and dropped events, and the reconcile
// loop's pass durations, shoal_reconcile_pass_seconds), for
// the admin /metrics endpoint. It is safe to call at any time.
func (c *Controller) Metrics() prometheus.Gatherer {
	c.as.mu.Lock()
	defer c.as.mu.Unlock()
	if c.as.metrics == nil {
		c.as.metrics = newAutoscaleMetrics()
	}
	return prometheus.Gatherers{c.as.metrics.reg, c.events.reg, c.passes.reg}
}
