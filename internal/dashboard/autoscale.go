package dashboard

import (
	"fmt"
	"strings"
	"time"
)

// Autoscale is the state of a group's auto scaling, as the overview shows
// it: each policy's value against its target, whether scaling is paused,
// and the reason of the last decision.
type Autoscale struct {
	Paused bool `json:"paused"`
	// State is the strategy's state: steady, cooling_out, stabilizing,
	// cooling_in or paused; empty before the first evaluation.
	State    string            `json:"state,omitempty"`
	Min      int               `json:"min"`
	Max      int               `json:"max"`
	Policies []AutoscalePolicy `json:"policies"`
	// Held says why the last evaluation changed nothing; empty when it
	// changed the count or has not run.
	Held string `json:"held,omitempty"`
	// LastChange is the last change the autoscaler made; nil when none.
	LastChange *AutoscaleChange `json:"last_change,omitempty"`
}

// AutoscalePolicy is one policy's reading. Value and Target are in the
// metric's unit: requests per second or in flight per instance, seconds
// for latency_p95 and latency_p99, cores for cpu. Target is 0 for a step
// policy.
type AutoscalePolicy struct {
	Name   string  `json:"name"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	// OK is false when the policy has no data yet; Note says why.
	OK   bool   `json:"ok"`
	Note string `json:"note,omitempty"`
}

// AutoscaleChange is one change of the desired count by the autoscaler.
type AutoscaleChange struct {
	Time   time.Time `json:"time"`
	From   int       `json:"from"`
	To     int       `json:"to"`
	Reason string    `json:"reason"`
}

// Format prints v in the policy's unit ("12.5 req/s per instance",
// "180 ms", "0.42 cores").
func (p AutoscalePolicy) Format(v float64) string {
	switch {
	case strings.HasPrefix(p.Metric, "latency"):
		return fmtDur(time.Duration(v * float64(time.Second)))
	case p.Metric == "cpu":
		return fmt.Sprintf("%.2f cores", v)
	case strings.Contains(p.Metric, "flight"):
		return fmtNum(v) + " in flight per instance"
	default:
		return fmtNum(v) + " req/s per instance"
	}
}

// Percent is Value as a whole percentage of Target, 0 without a target
// or data.
func (p AutoscalePolicy) Percent() int {
	if !p.OK || p.Target <= 0 {
		return 0
	}
	return int(p.Value/p.Target*100 + 0.5)
}

// BarMax is the scale of the policy's bar: twice the target, or the value
// when it is beyond that, so that the target sits mid-bar.
func (p AutoscalePolicy) BarMax() float64 {
	return max(2*p.Target, p.Value)
}
