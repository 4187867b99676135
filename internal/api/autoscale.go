package api

import "time"

// AutoscaleStatus is a point-in-time view of auto scaling, the answer of
// GET and POST /v1/autoscale: each policy's current value against its
// target, the state of the strategy, and its last change. The controller
// fills it from its autoscaler; the dashboard derives its panel from it.
type AutoscaleStatus struct {
	// Enabled is false when shoal.yaml has no autoscale section; the other
	// fields are then zero.
	Enabled bool `json:"enabled"`
	Paused  bool `json:"paused"`
	// State is steady, cooling_out, stabilizing, cooling_in or paused.
	State string `json:"state,omitempty"`
	// Min and Max are the current bounds (schedules change them).
	Min     int `json:"min"`
	Max     int `json:"max"`
	Desired int `json:"desired"`
	// Held says why the last evaluation changed nothing.
	Held string `json:"held,omitempty"`
	// EvaluatedAt is the time of the last evaluation; zero before the first.
	EvaluatedAt time.Time         `json:"evaluated_at,omitzero"`
	Policies    []AutoscalePolicy `json:"policies"`
	// LastChange is the last change the autoscaler made, if any.
	LastChange *AutoscaleChange `json:"last_change,omitempty"`
	// Interval, Window, Stabilization and Warmup are the settings, in
	// seconds.
	IntervalSeconds      float64 `json:"interval_seconds"`
	WindowSeconds        float64 `json:"window_seconds"`
	StabilizationSeconds float64 `json:"stabilization_seconds"`
	WarmupSeconds        float64 `json:"warmup_seconds"`
}

// AutoscalePolicy is one policy's reading in AutoscaleStatus.
type AutoscalePolicy struct {
	Name string `json:"name"`
	// Kind is target_tracking or step.
	Kind   string `json:"kind"`
	Metric string `json:"metric"`
	// Value and Target are in the metric's unit: requests per second or
	// in flight per instance, seconds of latency (latency_p95,
	// latency_p99), cores of CPU (cpu). Target is 0 for a step policy.
	// Value is meaningful when OK.
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	// OK is false when the policy has no data yet; Note says why.
	OK bool `json:"ok"`
	// Warm is the number of warmed-up instances the value is measured on.
	Warm int `json:"warm"`
	// Wants is the count the policy proposes.
	Wants int `json:"wants"`
	// Note explains the value and proposal in words.
	Note string `json:"note"`
}

// AutoscaleChange is one change of the desired count by the autoscaler.
type AutoscaleChange struct {
	Time time.Time `json:"time"`
	// Direction is "out" or "in".
	Direction string `json:"direction"`
	From      int    `json:"from"`
	To        int    `json:"to"`
	Reason    string `json:"reason"`
}

// AutoscaleRequest is the body of POST /v1/autoscale: pause (true) or
// resume (false) auto scaling. Paused is required; nil is a bad request.
type AutoscaleRequest struct {
	Paused *bool `json:"paused"`
}
