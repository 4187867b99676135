package client

import (
	"context"
	"net/http"

	"github.com/shoal-dev/shoal/internal/api"
)

// The autoscale wire types are those of the one vocabulary (package api).
type (
	// Autoscale is the answer of GET /v1/autoscale: each policy's value
	// against its target, the strategy's state and its last change.
	Autoscale = api.AutoscaleStatus
	// AutoscalePolicy is one policy in Autoscale.
	AutoscalePolicy = api.AutoscalePolicy
	// AutoscaleChange is the last change of the desired count by the
	// autoscaler.
	AutoscaleChange = api.AutoscaleChange
)

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
	err := c.do(ctx, http.MethodPost, "/v1/autoscale", api.AutoscaleRequest{Paused: &paused}, &a)
	return a, err
}
