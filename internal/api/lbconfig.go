package api

// The configuration a balancer node (`shoal lb` following a server, role
// lb) receives from the server on GET /v1/lb/config of the fleet port: a
// snapshot, then the changes after it, each numbered. The server derives
// it from its own balancer (routes, each app's pool and its members) and
// each app's health check; the node builds its own balancer from it.
// Durations are whole milliseconds.

// LBConfig is the whole configuration a balancer node follows.
type LBConfig struct {
	// Routes are the server's route table, in its order.
	Routes []LBRoute `json:"routes"`
	// Pools are sorted by name.
	Pools []LBPool `json:"pools"`
	// Certificates are the server's certificates from ACME (server.yaml
	// balancer.acme), one per host name in the order of its hosts, which
	// every node serves on its listeners marked acme. They hold private
	// keys: the node keeps them in a 0600 file. Nil: none.
	Certificates []LBCertificate `json:"certificates,omitempty"`
	// Challenges are the HTTP-01 challenges the server's ACME client has
	// pending, sorted by token: every node answers them, so the CA may
	// validate through any node. Nil: none.
	Challenges []LBChallenge `json:"challenges,omitempty"`
}

// LBCertificate is a certificate chain (leaf first) and its private key,
// in PEM, for the DNS names it was issued for.
type LBCertificate struct {
	Names   []string `json:"names"`
	CertPEM string   `json:"cert_pem"`
	KeyPEM  string   `json:"key_pem"`
}

// LBChallenge is a pending HTTP-01 challenge (RFC 8555 8.3): GET
// /.well-known/acme-challenge/{Token} is answered with KeyAuth.
type LBChallenge struct {
	Token   string `json:"token"`
	KeyAuth string `json:"key_auth"`
}

// LBRoute sends the requests whose host and path match to a pool (as
// lb.Route).
type LBRoute struct {
	Name           string   `json:"name"`
	Host           string   `json:"host,omitempty"`
	PathPrefix     string   `json:"path_prefix"`
	Pool           string   `json:"pool"`
	LongLived      bool     `json:"long_lived,omitempty"`
	LongLivedPaths []string `json:"long_lived_paths,omitempty"`
}

// LBPool is one pool: its settings (as lb.PoolConfig), the active health
// check each node runs itself, and its targets.
type LBPool struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	// Sticky is nil without session affinity. Its Secret is the key that
	// signs the affinity cookie, the same on the server's balancer and on
	// every node, so that a client pinned through one stays pinned
	// through another.
	Sticky           *LBSticky  `json:"sticky,omitempty"`
	Outlier          *LBOutlier `json:"outlier,omitempty"`
	SlowStartMS      int64      `json:"slow_start_ms,omitempty"`
	DrainTimeoutMS   int64      `json:"drain_timeout_ms,omitempty"`
	Retries          int        `json:"retries,omitempty"`
	TryTimeoutMS     int64      `json:"try_timeout_ms,omitempty"` // negative: off
	ConnectTimeoutMS int64      `json:"connect_timeout_ms,omitempty"`
	// Protocol is lb.Protocol's name; empty: http1.
	Protocol string `json:"protocol,omitempty"`
	// Health is the check each node runs against the targets; nil: none
	// (the node then trusts the server's verdict, Healthy).
	Health *LBHealth `json:"health,omitempty"`
	// Targets, sorted by address, in a snapshot; nil in an LBChange (the
	// targets change one by one).
	Targets []LBTarget `json:"targets,omitempty"`
}

// LBSticky is a pool's session affinity (as pool.Sticky).
type LBSticky struct {
	Cookie         string   `json:"cookie,omitempty"`
	TTLMS          int64    `json:"ttl_ms,omitempty"`
	Secret         []byte   `json:"secret,omitempty"`
	SockJSPrefixes []string `json:"sockjs_prefixes,omitempty"`
}

// LBOutlier is a pool's passive ejection (as pool.Outlier).
type LBOutlier struct {
	ConsecutiveFailures int   `json:"consecutive_failures"`
	BaseEjectionMS      int64 `json:"base_ejection_ms,omitempty"`
	MaxEjectionMS       int64 `json:"max_ejection_ms,omitempty"`
	MaxEjectedPercent   int   `json:"max_ejected_percent,omitempty"`
}

// LBHealth is an active HTTP check (as health.Spec); Statuses are
// inclusive [min, max] ranges of passing codes.
type LBHealth struct {
	Path               string   `json:"path"`
	Host               string   `json:"host,omitempty"`
	IntervalMS         int64    `json:"interval_ms"`
	TimeoutMS          int64    `json:"timeout_ms"`
	HealthyThreshold   int      `json:"healthy_threshold"`
	UnhealthyThreshold int      `json:"unhealthy_threshold"`
	Statuses           [][2]int `json:"statuses,omitempty"`
	Jitter             float64  `json:"jitter,omitempty"`
}

// LBTargetState is what the server does with a target: it serves
// (in_service) or drains it (draining). A target the server has removed
// is gone (LBTargetRemoved).
type LBTargetState string

const (
	// LBInService: the server's pool has the target and does not drain
	// it. A node adds it and sends it requests once its own check passes
	// (at once when the server's verdict was healthy).
	LBInService LBTargetState = "in_service"
	// LBDraining: the server drains the target; a node drains it too.
	LBDraining LBTargetState = "draining"
)

// LBTarget is one target of a pool.
type LBTarget struct {
	Addr   string        `json:"addr"`
	Weight int           `json:"weight"`
	State  LBTargetState `json:"state"`
	// Healthy is the server's verdict (its state healthy or ejected): a
	// node adds the target healthy or awaiting its own check.
	Healthy bool `json:"healthy"`
}

// LBChangeKind says what an LBChange replaces.
type LBChangeKind string

const (
	LBRoutesSet     LBChangeKind = "routes"         // Routes is the new table
	LBPoolSet       LBChangeKind = "pool"           // Pool is a new or changed pool's settings
	LBPoolRemoved   LBChangeKind = "pool_removed"   // PoolName is gone, with its targets
	LBTargetSet     LBChangeKind = "target"         // Target of PoolName is new or changed
	LBTargetRemoved LBChangeKind = "target_removed" // Target.Addr of PoolName is gone
	LBCertsSet      LBChangeKind = "certificates"   // Certificates is the new set
	LBChallengesSet LBChangeKind = "challenges"     // Challenges is the new set
)

// LBChange is one numbered change of the configuration.
type LBChange struct {
	Version  uint64       `json:"version"`
	Kind     LBChangeKind `json:"kind"`
	Routes   []LBRoute    `json:"routes,omitempty"`
	Pool     *LBPool      `json:"pool,omitempty"`
	PoolName string       `json:"pool_name,omitempty"`
	Target   *LBTarget    `json:"target,omitempty"`
	// Certificates and Challenges are whole sets (kinds certificates,
	// challenges); empty means none.
	Certificates []LBCertificate `json:"certificates,omitempty"`
	Challenges   []LBChallenge   `json:"challenges,omitempty"`
}

// LBConfigPage answers GET /v1/lb/config?epoch=E&after=V on the server's
// fleet port. Versions count the changes since the server started (its
// Epoch, a name per run). When the node's epoch is the server's and the
// server still holds every change after V, the answer holds those
// (Changes, oldest first; held until there is one, up to a bound, when V
// is the latest: then Changes is empty); otherwise (a first call, a
// restarted server, a node too far behind) it holds Snapshot, the whole
// configuration at Version. Either way the node's configuration is then
// the one at Version, and its next call asks for the changes after it.
type LBConfigPage struct {
	Epoch    string     `json:"epoch"`
	Version  uint64     `json:"version"`
	Snapshot *LBConfig  `json:"snapshot,omitempty"`
	Changes  []LBChange `json:"changes,omitempty"`
}
