package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// The balancer's wire types are those of the one vocabulary (package api).
type (
	// LBStatus is the answer of GET /v1/lb/status.
	LBStatus = api.LBStatus
	// Listener is one listener of the balancer.
	Listener = api.ListenerStatus
	// Route is one route of the balancer.
	Route = api.RouteStatus
	// Pool is one pool of targets.
	Pool = api.PoolStatus
	// Target is one target of a pool.
	Target = api.TargetStatus
	// TargetRequest is the body of POST /v1/lb/pools/{pool}/targets.
	TargetRequest = api.TargetRequest
	// WeightRequest is the body of PUT .../targets/{addr}/weight.
	WeightRequest = api.WeightRequest
	// DrainRequest is the body of POST .../targets/{addr}/drain.
	DrainRequest = api.DrainRequest
	// MaintenanceRequest is the body of POST /v1/lb/maintenance.
	MaintenanceRequest = api.MaintenanceRequest
	// DrainResult is the answer of a drain or a removal.
	DrainResult = api.DrainResult
)

// LBStatus returns the listeners, routes, pools and targets of the
// balancer.
func (c *Client) LBStatus(ctx context.Context) (*LBStatus, error) {
	var st LBStatus
	if err := c.do(ctx, http.MethodGet, "/v1/lb/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// BalancerCheckTimeout bounds one CheckBalancer: below the interval at
// which the floating address's check runs (a second), plus half of one.
const BalancerCheckTimeout = 1500 * time.Millisecond

// CheckBalancer is the floating address's health check of a balancer
// (lb.yaml's vip section): nil when the balancer answers GET
// /v1/lb/status on its admin API within BalancerCheckTimeout, else the
// reason. The admin API is served by the balancer's own process, so a
// dead, stopped or wedged balancer fails it. `shoal lb check` runs it
// once; the keepalived guard of `shoal lb` runs it every second.
func (c *Client) CheckBalancer(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, BalancerCheckTimeout)
	defer cancel()
	if _, err := c.LBStatus(ctx); err != nil {
		return fmt.Errorf("balancer check: %w", err)
	}
	return nil
}

// Pools returns the pools and their targets.
func (c *Client) Pools(ctx context.Context) ([]Pool, error) {
	var out api.PoolList
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
	return c.do(ctx, http.MethodPut, targetPath(pool, addr)+"/weight", WeightRequest{Weight: &weight}, nil)
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
	req := MaintenanceRequest{On: &on}
	if retryAfter > 0 {
		req.RetryAfter = retryAfter.String()
	}
	return c.do(ctx, http.MethodPost, "/v1/lb/maintenance", req, nil)
}
