package controller

import (
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/autoscale"
)

// TestAutoscaleMetricsOneUnitPerName checks that each policy's value and
// target go to the family of its metric's unit, so that no metric name
// mixes requests, seconds and cores.
func TestAutoscaleMetricsOneUnitPerName(t *testing.T) {
	m := newAutoscaleMetrics()
	m.update(autoscale.Decision{Desired: 3, PerPolicy: []autoscale.PolicyValue{
		{Name: "rps", Metric: autoscale.RPSPerInstance, Kind: autoscale.TargetTracking, Value: 12, Target: 20, OK: true},
		{Name: "p95", Metric: autoscale.LatencyP95, Kind: autoscale.TargetTracking, Value: 0.25, Target: 0.3, OK: true},
		{Name: "busy", Metric: autoscale.InFlightPerInstance, Kind: autoscale.TargetTracking, Value: 4, Target: 8, OK: true},
		{Name: "cpu", Metric: autoscale.CPU, Kind: autoscale.StepScaling, Value: 0.5, OK: true},
		{Name: "p99", Metric: autoscale.LatencyP99, Kind: autoscale.TargetTracking, Target: 1},
	}})
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range s.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = s.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"shoal_autoscale_policy_value_requests_per_second metric=rps_per_instance policy=rps":  12,
		"shoal_autoscale_policy_target_requests_per_second metric=rps_per_instance policy=rps": 20,
		"shoal_autoscale_policy_value_seconds metric=latency_p95 policy=p95":                   0.25,
		"shoal_autoscale_policy_target_seconds metric=latency_p95 policy=p95":                  0.3,
		"shoal_autoscale_policy_target_seconds metric=latency_p99 policy=p99":                  1,
		"shoal_autoscale_policy_value_requests metric=inflight_per_instance policy=busy":       4,
		"shoal_autoscale_policy_target_requests metric=inflight_per_instance policy=busy":      8,
		"shoal_autoscale_policy_value_cores metric=cpu policy=cpu":                             0.5,
		"shoal_autoscale_desired": 3,
		"shoal_autoscale_paused":  0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s", k)
		}
		if strings.HasPrefix(k, "shoal_autoscale_policy_value ") || strings.HasPrefix(k, "shoal_autoscale_policy_target ") {
			t.Errorf("series %s has no unit in its name", k)
		}
	}
}

// TestEveryAutoscaleMetricHasAFamily keeps autoscaleUnits in step with
// autoscale.Metric: a new metric without a family would not be exported.
func TestEveryAutoscaleMetricHasAFamily(t *testing.T) {
	m := newAutoscaleMetrics()
	n := 0
	for met := autoscale.Metric(0); met < 255; met++ {
		if _, err := autoscale.ParseMetric(met.String()); err != nil {
			continue // not a metric
		}
		n++
		if m.value[met.Unit()] == nil || m.target[met.Unit()] == nil {
			t.Errorf("metric %s (unit %q) has no family", met, met.Unit())
		}
	}
	if n < 5 {
		t.Fatalf("found %d metrics, want at least 5", n)
	}
}
