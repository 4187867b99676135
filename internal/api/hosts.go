package api

import "time"

// HostState is where a host of the fleet stands for placement, sent as its
// name. The server's registry (package fleet) moves a host between them:
//
//	hello --> joining --listed--> ready <--Drain/Undrain--> draining
//	             |                  |                          |
//	             +---- no heartbeat for LostAfter -------------+--> unreachable
//	                                                                 |
//	  ready (or draining) <--its stale instances stopped-- answers again
type HostState string

const (
	// HostJoining: announced (or known from the store), not yet listed in
	// this run of the server; it takes no instance yet.
	HostJoining HostState = "joining"
	// HostReady: reachable and listed; placement may choose it.
	HostReady HostState = "ready"
	// HostUnreachable: its heartbeats stopped for longer than the fleet's
	// LostAfter (or it answers again and its stale instances are being
	// stopped); its instances were reported ended.
	HostUnreachable HostState = "unreachable"
	// HostDraining: reachable, but the operator keeps new instances off it.
	HostDraining HostState = "draining"
)

// Host is the server's durable record of one host of the fleet: what its
// agent announced (AgentHello) and what the server decided about it. The
// store keeps it (store/hosts.go); observed facts (reachability, the
// instances that run) are never stored, they are observed again.
type Host struct {
	// Name is the host's name from its verified client certificate.
	Name string
	// URL is the agent's API (https://advertise-ip:port).
	URL  string
	Zone string
	// Region is the host's region label; its zones are within it.
	Region string
	// CPU (cores) and MemoryBytes are what the server may place on the
	// host; zero is unbounded.
	CPU         float64
	MemoryBytes int64
	// Epoch names the run of the agent that last said hello.
	Epoch   string
	Version string
	// Generation is bumped each time the server declares the host lost:
	// an instance started under an older generation was reported ended
	// and is stopped when the host answers again (the fence that keeps
	// at most desired + surge instances serving).
	Generation uint64
	// Draining keeps new instances off the host (Fleet.Drain).
	Draining bool
	// Joined is the first hello, LastHello the latest.
	Joined    time.Time
	LastHello time.Time
}

// HostStatus is one host of the fleet as `shoal hosts` shows it: an
// agent's host, or a balancer node that follows the server (Role RoleLB,
// with Balancer set; of the other fields it has Name, State, Reason and
// LastHeartbeat, the time of its last call).
type HostStatus struct {
	Name string `json:"name"`
	// Role is what the host is to the fleet: RoleAgent (it runs
	// instances) or RoleLB (a balancer node).
	Role NodeRole `json:"role"`
	URL  string   `json:"url"`
	Zone string   `json:"zone,omitempty"`
	// Region is the host's region label ("" for none).
	Region string    `json:"region,omitempty"`
	State  HostState `json:"state"`
	// Reason says why a host is not ready ("no heartbeat for 5s").
	Reason string `json:"reason,omitempty"`
	// CPU and MemoryBytes are the host's capacity (zero: unbounded);
	// UsedCPU and UsedMemoryBytes what its instances declared.
	CPU             float64 `json:"cpu"`
	MemoryBytes     int64   `json:"memory_bytes"`
	UsedCPU         float64 `json:"used_cpu"`
	UsedMemoryBytes int64   `json:"used_memory_bytes"`
	// Instances counts the instances placed on the host (starting ones
	// included, stale ones not).
	Instances int `json:"instances"`
	// LastHeartbeat is when the host last answered; zero if never in this
	// run of the server.
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	Epoch         string    `json:"epoch"`
	Generation    uint64    `json:"generation"`
	Version       string    `json:"version,omitempty"`
	// Balancer is a balancer node's standing; nil for an agent.
	Balancer *BalancerNodeStatus `json:"balancer,omitempty"`
}

// BalancerNodeStatus is where a balancer node stands in following the
// server's balancer configuration. The node is ready while it calls (a
// call is renewed every 25 s at the latest), joining when it joined before
// this run of the server and has not called yet, and unreachable when its
// calls stopped for 40 s.
type BalancerNodeStatus struct {
	// Addr is the address the node's last call came from.
	Addr string `json:"addr"`
	// Applied is the version of this server run's configuration that the
	// node has applied (the version it last asked the changes after; 0
	// before its first answer from this run), ServerVersion the server's
	// latest: equal when the node is up to date.
	Applied       uint64 `json:"applied"`
	ServerVersion uint64 `json:"server_version"`
}
