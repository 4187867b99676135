package uisource

import (
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/dashboard"
)

// autoscaleView converts the controller's auto-scaling status for the
// overview; nil when shoal.yaml has no autoscale section.
func autoscaleView(st controller.AutoscaleStatus) *dashboard.Autoscale {
	if !st.Enabled {
		return nil
	}
	a := &dashboard.Autoscale{Paused: st.Paused, State: st.State, Min: st.Min, Max: st.Max, Held: st.Held,
		Policies: make([]dashboard.AutoscalePolicy, 0, len(st.Policies))}
	for _, p := range st.Policies {
		a.Policies = append(a.Policies, dashboard.AutoscalePolicy{Name: p.Name, Metric: p.Metric,
			Value: p.Value, Target: p.Target, OK: p.OK, Note: p.Note})
	}
	if ch := st.LastChange; ch != nil {
		a.LastChange = &dashboard.AutoscaleChange{Time: ch.Time, From: ch.From, To: ch.To, Reason: ch.Reason}
	}
	return a
}
