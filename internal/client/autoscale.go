package client

import (
	"context"
	"net/http"
	"time"
)

// Autoscale is the answer of GET /v1/autoscale: each policy's value
// against its target, the strategy's state and its last change.
type Autoscale struct {
	// Enabled is false when shoal.yaml has no autoscale section.
	Enabled bool `json:"enabled"`
	Paused  bool `json:"paused"`
	// State is steady, cooling_out, stabilizing, cooling_in or paused.
	State       string            `json:"state,omitempty"`
	Min         int               `json:"min"`
	Max         int               `json:"max"`
	Desired     int               `json:"desired"`
	Held        string            `json:"held,omitempty"`
	EvaluatedAt time.Time         `json:"evaluated_at,omitzero"`
	Policies    []AutoscalePolicy `json:"policies"`
	LastChange  *AutoscaleChange  `json:"last_change,omitempty"`

	IntervalSeconds      float64 `json:"interval_seconds"`
	WindowSeconds        float64 `json:"window_seconds"`
	StabilizationSeconds float64 `json:"stabilization_seconds"`
	WarmupSeconds        float64 `json:"warmup_seconds"`
}

// AutoscalePolicy is one policy in Autoscale. Value and Target are in the
// metric's unit: requests per second or in flight per instance, seconds
// of latency (latency_p95, latency_p99), cores of CPU (cpu).
type AutoscalePolicy struct {
	Name   string  `json:"name"`
	Kind   string  `json:"kind"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	// OK is false when the policy has no data yet; Note says why.
	OK    bool   `json:"ok"`
	Warm  int    `json:"warm"`
	Wants int    `json:"wants"`
	Note  string `json:"note"`
}

// AutoscaleChange is the last change of the desired count by the
// autoscaler.
type AutoscaleChange struct {
	Time      time.Time `json:"time"`
	Direction string    `json:"direction"`
	From      int       `json:"from"`
	To        int       `json:"to"`
	Reason    string    `json:"reason"`
}

// Autoscale returns the state of auto scaling.
func (c *Client) Autoscale(ctx context.Context) (Autoscale, error) {
	var a Autoscale
	err := c.do(ctx, http.MethodGet, "/v1/autoscale", nil, &a)
	return a, err
}

// PauseAutoscale pauses (true) or resumes (false) auto scaling and returns
// the new state. Without an autoscale section it is a 409 *APIError.
func (c *Client) PauseAutoscale(ctx context.Context, paused bool) (Autoscale, error) {
	var a Autoscale
	err := c.do(ctx, http.MethodPost, "/v1/autoscale", map[string]bool{"paused": paused}, &a)
	return a, err
}
