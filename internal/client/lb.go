package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// LBStatus is the answer of GET /v1/lb/status (the balancer's lb.Status).
type LBStatus struct {
	Listeners []Listener `json:"listeners"`
	Routes    []Route    `json:"routes"`
	// Pools are sorted by name.
	Pools []Pool `json:"pools"`
	// Maintenance is true while every proxied request gets 503.
	Maintenance bool `json:"maintenance"`
	// WebSockets counts open upgraded connections.
	WebSockets int `json:"websockets"`
}

// Listener is one listener of the balancer.
type Listener struct {
	Name string `json:"name"`
	// Addr is the bound address.
	Addr   string   `json:"addr"`
	TLS    bool     `json:"tls"`
	Routes []string `json:"routes,omitempty"`
}

// Route is one route of the balancer.
type Route struct {
	Name       string `json:"name"`
	Host       string `json:"host,omitempty"`
	PathPrefix string `json:"path_prefix"`
	Pool       string `json:"pool"`
}

// Pool is one pool of targets.
type Pool struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	// Healthy counts targets in state "healthy".
	Healthy int `json:"healthy"`
	// FailOpen is true when no target is healthy and requests are spread
	// over all non-draining targets.
	FailOpen bool `json:"fail_open"`
	// Targets are in the order they were added.
	Targets []Target `json:"targets"`
}

// Target is one target of a pool.
type Target struct {
	Addr string `json:"addr"`
	// State is healthy, unhealthy, ejected or draining.
	State string `json:"state"`
	// Reason is why the target entered State.
	Reason string `json:"reason"`
	// Since is when the target entered State.
	Since  time.Time `json:"since"`
	Weight int       `json:"weight"`
	// EffectiveWeight includes slow start.
	EffectiveWeight float64 `json:"effective_weight"`
	InFlight        int64   `json:"in_flight"`
	Requests        int64   `json:"requests"`
	Ejections       int64   `json:"ejections"`
	// LatencyMS is the moving average of time to first byte, in
	// milliseconds; 0 before the first response.
	LatencyMS float64 `json:"ewma_ms"`
	// Check is the active health verdict (healthy, unhealthy, unknown);
	// empty when the pool has no active checks.
	Check       string `json:"check,omitempty"`
	CheckReason string `json:"check_reason,omitempty"`
}

// TargetRequest is the body of POST /v1/lb/pools/{pool}/targets.
type TargetRequest struct {
	Addr   string `json:"addr"`
	Weight int    `json:"weight,omitempty"`
}

// WeightRequest is the body of PUT .../targets/{addr}/weight.
type WeightRequest struct {
	Weight int `json:"weight"`
}

// DrainRequest is the body of POST .../targets/{addr}/drain. Timeout is a
// Go duration ("10s"); empty means the pool's drain timeout.
type DrainRequest struct {
	Timeout string `json:"timeout,omitempty"`
}

// MaintenanceRequest is the body of POST /v1/lb/maintenance. RetryAfter is
// a Go duration; empty means no Retry-After header.
type MaintenanceRequest struct {
	On         bool   `json:"on"`
	RetryAfter string `json:"retry_after,omitempty"`
}

// DrainResult is the answer of a drain or a removal.
type DrainResult struct {
	Pool string `json:"pool"`
	Addr string `json:"addr"`
	// Idle is true when the target had no request in flight when the
	// answer was written (always checked with wait=true; false without
	// wait unless it was already idle).
	Idle bool `json:"idle"`
}

// LBStatus returns the listeners, routes, pools and targets of the
// balancer.
func (c *Client) LBStatus(ctx context.Context) (*LBStatus, error) {
	var st LBStatus
	if err := c.do(ctx, http.MethodGet, "/v1/lb/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Pools returns the pools and their targets.
func (c *Client) Pools(ctx context.Context) ([]Pool, error) {
	var out struct {
		Pools []Pool `json:"pools"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/lb/pools", nil, &out); err != nil {
		return nil, err
	}
	return out.Pools, nil
}

func targetPath(pool, addr string) string {
	return "/v1/lb/pools/" + url.PathEscape(pool) + "/targets/" + url.PathEscape(addr)
}

func waitQuery(wait bool) string {
	if wait {
		return "?wait=true"
	}
	return ""
}

// AddTarget adds addr (host:port) to pool with weight (0 means 1). It
// returns an *APIError with status 409 when the target exists.
func (c *Client) AddTarget(ctx context.Context, pool, addr string, weight int) error {
	return c.do(ctx, http.MethodPost, "/v1/lb/pools/"+url.PathEscape(pool)+"/targets",
		TargetRequest{Addr: addr, Weight: weight}, nil)
}

// RemoveTarget drains addr out of pool and deletes it. With wait, the call
// returns when the target is idle (or ctx ends).
func (c *Client) RemoveTarget(ctx context.Context, pool, addr string, wait bool) (*DrainResult, error) {
	var out DrainResult
	if err := c.do(ctx, http.MethodDelete, targetPath(pool, addr)+waitQuery(wait), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DrainTarget stops new requests to addr and lets in-flight ones finish
// within timeout (0: the pool's drain timeout). The target stays in the
// pool, draining. With wait, the call returns when it is idle.
func (c *Client) DrainTarget(ctx context.Context, pool, addr string, timeout time.Duration, wait bool) (*DrainResult, error) {
	var req DrainRequest
	if timeout > 0 {
		req.Timeout = timeout.String()
	}
	var out DrainResult
	if err := c.do(ctx, http.MethodPost, targetPath(pool, addr)+"/drain"+waitQuery(wait), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UndrainTarget puts a drained target of pool back in rotation. A target
// being removed cannot be put back: that is an *APIError with status 409.
func (c *Client) UndrainTarget(ctx context.Context, pool, addr string) error {
	return c.do(ctx, http.MethodPost, targetPath(pool, addr)+"/undrain", nil, nil)
}

// SetWeight changes the weight (1-256) of addr in pool.
func (c *Client) SetWeight(ctx context.Context, pool, addr string, weight int) error {
	return c.do(ctx, http.MethodPut, targetPath(pool, addr)+"/weight", WeightRequest{Weight: weight}, nil)
}

// Reload makes the balancer re-read its configuration file. An invalid
// file is an *APIError with status 400 whose Message lists the problems;
// the running configuration is kept.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/lb/reload", nil, nil)
}

// Maintenance turns maintenance mode on (every proxied request gets 503
// with Retry-After) or off.
func (c *Client) Maintenance(ctx context.Context, on bool, retryAfter time.Duration) error {
	req := MaintenanceRequest{On: on}
	if retryAfter > 0 {
		req.RetryAfter = retryAfter.String()
	}
	return c.do(ctx, http.MethodPost, "/v1/lb/maintenance", req, nil)
}
