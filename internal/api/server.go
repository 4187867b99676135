package api

import "time"

// FleetEventsApp is the key under which `shoal server` keeps the fleet's
// own events (hosts joined, lost, back, draining) in its event log, next
// to each app's; it is not a valid app name, so no app can own it.
const FleetEventsApp = "@fleet"

// AppSummary is one app of `shoal server`, as GET /v1/apps lists them
// (`shoal apps`).
type AppSummary struct {
	Name string `json:"name"`
	// Release is the version in service; 0 before the first deploy made
	// one.
	Release   int `json:"release"`
	Desired   int `json:"desired"`
	InService int `json:"in_service"`
	Instances int `json:"instances"`
	// Hosts and Path are the app's routes on the server's balancer
	// (balancer.hosts, balancer.path); no hosts: the catch-all.
	Hosts []string `json:"hosts"`
	Path  string   `json:"path"`
	// Deploying is set while a rollout runs.
	Deploying bool `json:"deploying"`
}

// JoinTokenRequest is the body of POST /v1/join-tokens (`shoal
// join-token`): the role of the node that will join with the token, and
// how long the token may be used ("1h"; empty: pki.DefaultTokenTTL).
type JoinTokenRequest struct {
	Role NodeRole `json:"role"`
	TTL  string   `json:"ttl,omitempty"`
}

// JoinTokenAnswer is the answer of POST /v1/join-tokens: the token,
// shown once (the server keeps only a hash of its secret), and when it
// stops working.
type JoinTokenAnswer struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}
