package api

import "time"

// LBStatus is a point-in-time view of the balancer, the answer of
// GET /v1/lb/status: its listeners, routes, pools with their targets, and
// whether maintenance mode is on. The balancer fills it (lb.Balancer.Status).
type LBStatus struct {
	Listeners []ListenerStatus `json:"listeners"`
	Routes    []RouteStatus    `json:"routes"`
	// Pools are sorted by name.
	Pools []PoolStatus `json:"pools"`
	// Maintenance is true while every proxied request gets 503.
	Maintenance bool `json:"maintenance"`
	// WebSockets counts open upgraded connections.
	WebSockets int `json:"websockets"`
}

// ListenerStatus is one listener of the balancer.
type ListenerStatus struct {
	Name string `json:"name"`
	// Addr is the bound address, or the configured one before Listen.
	Addr   string   `json:"addr"`
	TLS    bool     `json:"tls"`
	Routes []string `json:"routes,omitempty"`
	// Timing is where the time of the listener's requests went since the
	// balancer started; nil before its first request.
	Timing *RequestTiming `json:"timing,omitempty"`
}

// RouteStatus is one route of the balancer.
type RouteStatus struct {
	Name       string `json:"name"`
	Host       string `json:"host,omitempty"`
	PathPrefix string `json:"path_prefix"`
	Pool       string `json:"pool"`
	// Timing is where the time of the route's requests went since the
	// balancer started; nil before its first request.
	Timing *RequestTiming `json:"timing,omitempty"`
}

// RequestTiming splits the time of a route's or a listener's requests,
// since the balancer started, into the app's and the network's share:
// percentiles (from fixed buckets, interpolated) of the app's time (the
// target's time to first byte, of requests that reached a target and
// were neither held open nor a WebSocket) and of the client connection's
// round-trip time (the kernel's smoothed estimate, TCP_INFO, when each
// request ended).
type RequestTiming struct {
	// Requests counts every request and WebSocket recorded.
	Requests int64 `json:"requests"`
	// AppSamples counts the requests in the app's percentiles.
	AppSamples int64   `json:"app_samples"`
	AppP50MS   float64 `json:"app_p50_ms"`
	AppP95MS   float64 `json:"app_p95_ms"`
	// RTTSamples counts the requests whose round-trip time was known.
	RTTSamples int64   `json:"rtt_samples"`
	RTTP50MS   float64 `json:"rtt_p50_ms"`
	RTTP95MS   float64 `json:"rtt_p95_ms"`
}

// PoolStatus is one pool of targets, with the active health view.
type PoolStatus struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	// Healthy counts targets in state "healthy".
	Healthy int `json:"healthy"`
	// FailOpen is true when no target is healthy and requests are spread
	// over all non-draining targets.
	FailOpen bool `json:"fail_open"`
	// Targets are in the order they were added; never nil.
	Targets []TargetStatus `json:"targets"`
}

// TargetStatus is one target of a pool: its state and the reason for it,
// and its load. It is also the answer of adding a target, setting its
// weight and undraining it.
type TargetStatus struct {
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
	// LatencyMS is the moving average of time to first byte, in
	// milliseconds; 0 before the first response.
	LatencyMS float64 `json:"ewma_ms"`
	Ejections int64   `json:"ejections"`
	Requests  int64   `json:"requests"`
	// Check is the active health verdict ("healthy", "unhealthy",
	// "unknown"); empty when the pool has no active checks.
	Check       string `json:"check,omitempty"`
	CheckReason string `json:"check_reason,omitempty"`
}

// PoolList is the answer of GET /v1/lb/pools: the pools of LBStatus.
type PoolList struct {
	Pools []PoolStatus `json:"pools"`
}

// TargetRequest is the body of POST /v1/lb/pools/{pool}/targets. Addr is
// host:port; Weight is 1-256, 0 (or absent) means 1.
type TargetRequest struct {
	Addr   string `json:"addr"`
	Weight int    `json:"weight,omitempty"`
}

// WeightRequest is the body of PUT .../targets/{addr}/weight. Weight is
// required (nil is a bad request), 1-256.
type WeightRequest struct {
	Weight *int `json:"weight"`
}

// DrainRequest is the body of POST .../targets/{addr}/drain. Timeout is a
// Go duration ("10s", at most 24h); empty means the pool's drain timeout.
type DrainRequest struct {
	Timeout string `json:"timeout,omitempty"`
}

// MaintenanceRequest is the body of POST /v1/lb/maintenance. On is
// required (nil is a bad request). RetryAfter is a Go duration (at most
// 24h) sent in Retry-After; empty means no Retry-After header.
type MaintenanceRequest struct {
	On         *bool  `json:"on"`
	RetryAfter string `json:"retry_after,omitempty"`
}

// DrainResult is the answer of a drain or a removal of a target.
type DrainResult struct {
	Pool string `json:"pool"`
	Addr string `json:"addr"`
	// Idle is true when the target had no request in flight when the
	// answer was written (always checked with wait=true; false without
	// wait unless it was already idle).
	Idle bool `json:"idle"`
}
