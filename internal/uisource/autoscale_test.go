package uisource

import (
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/controller"
)

func TestAutoscaleView(t *testing.T) {
	if a := autoscaleView(controller.AutoscaleStatus{Policies: []controller.PolicyStatus{}}); a != nil {
		t.Errorf("no autoscale section: %+v, want nil", a)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a := autoscaleView(controller.AutoscaleStatus{
		Enabled: true, Paused: true, State: "paused", Min: 2, Max: 8, Held: "paused by operator",
		Policies: []controller.PolicyStatus{
			{Name: "rps", Kind: "target_tracking", Metric: "rps_per_instance", Value: 12, Target: 20, OK: true, Note: "n"},
			{Name: "cpu", Metric: "cpu", OK: false, Note: "no data"},
		},
		LastChange: &controller.AutoscaleChange{Time: at, Direction: "out", From: 2, To: 3, Reason: "rps above target"},
	})
	if a == nil || !a.Paused || a.State != "paused" || a.Min != 2 || a.Max != 8 || a.Held != "paused by operator" {
		t.Fatalf("view = %+v", a)
	}
	if len(a.Policies) != 2 || a.Policies[0].Value != 12 || a.Policies[0].Target != 20 || !a.Policies[0].OK ||
		a.Policies[0].Metric != "rps_per_instance" || a.Policies[1].OK || a.Policies[1].Note != "no data" {
		t.Errorf("policies = %+v", a.Policies)
	}
	if ch := a.LastChange; ch == nil || !ch.Time.Equal(at) || ch.From != 2 || ch.To != 3 || ch.Reason != "rps above target" {
		t.Errorf("last change = %+v", a.LastChange)
	}
}
