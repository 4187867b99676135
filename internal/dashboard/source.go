package dashboard

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/timeseries"
)

// Source is what the dashboard shows and the one action it takes. The
// controller implements it through a thin adapter; package demo has a
// simulated one for development and tests.
//
// Every method is called concurrently from request handlers and must be
// safe for that. Methods should return quickly (they run every second for
// each open page); only LogTail blocks.
type Source interface {
	// Groups returns every group with its instances, balancer targets and
	// deploy progress, sorted by App.
	Groups(ctx context.Context) ([]Group, error)
	// Events returns at most limit events with Seq > afterSeq, oldest first.
	// When more than limit match it returns the newest limit of them, so
	// Events(ctx, 0, 100) is "the last 100 events".
	Events(ctx context.Context, afterSeq uint64, limit int) ([]Event, error)
	// Releases returns the releases of app, newest first. An unknown app
	// returns an error wrapping ErrNotFound.
	Releases(ctx context.Context, app string) ([]Release, error)
	// Instance returns one instance with its events (newest last). An
	// unknown id returns an error wrapping ErrNotFound.
	Instance(ctx context.Context, id string) (InstanceDetail, error)
	// LogTail writes the last lines lines of the instance's output to w,
	// then, when follow is set, every new line as it comes until ctx ends
	// (returning nil or ctx's error). Each line ends with '\n'. Writes to w
	// come from one goroutine at a time. An unknown id returns an error
	// wrapping ErrNotFound.
	LogTail(ctx context.Context, id string, lines int, follow bool, w io.Writer) error
	// Rollback starts a deploy of app's earlier release version and returns
	// once it has started (progress shows in Groups). An unknown app or
	// version returns an error wrapping ErrNotFound; a deploy already in
	// progress, one wrapping ErrConflict.
	Rollback(ctx context.Context, app string, version int) error
	// Series returns the request metrics of the last hour: per group
	// (Key{Group: app}) and per route, and the gauges
	// timeseries.InstanceCPU(id) and timeseries.InstanceRSS(id).
	Series() *timeseries.Store
	// Slow returns the slowest recent requests, slowest first.
	Slow() []timeseries.SlowRequest
	// Fleet returns the hosts that run the groups' instances and their
	// latest events, for the overview's hosts card; nil (and no error)
	// when the source runs no fleet, as on one machine: the card is then
	// absent.
	Fleet(ctx context.Context) (*Fleet, error)
}

// PageLoadSource is a Source that also keeps the page-load report (what
// the balancer's asset cache and compression did per route, and the time
// they saved), shown on the slow-requests page. A Source without it, or
// whose PageLoad is nil, shows no report.
type PageLoadSource interface {
	PageLoad() *timeseries.PageLoad
}

// Errors a Source wraps so the dashboard can answer with the right status.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// Group is one app's group as the dashboard shows it.
type Group struct {
	App     string `json:"app"`
	Release int    `json:"release"` // the release the group runs (target of a deploy in progress)
	Desired int    `json:"desired"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
	// Instances are sorted by ID.
	Instances []Instance `json:"instances"`
	// Targets are the balancer's targets of the group's pool.
	Targets []Target `json:"targets"`
	// Deploy is the deploy in progress or the last one; nil when the group
	// has never been deployed.
	Deploy *Deploy `json:"deploy,omitempty"`
	// Autoscale is the group's auto scaling; nil when it has none.
	Autoscale *Autoscale `json:"autoscale,omitempty"`
	// Held is the group's held-open exchanges (long polls, streams,
	// server-sent events), which the latency figures leave out; nil when
	// the source does not know them.
	Held *HeldStreams `json:"held,omitempty"`
}

// HeldStreams are a group's held-open exchanges: requests the app keeps
// open on purpose, whose duration is not a latency.
type HeldStreams struct {
	// Open is how many are open now.
	Open int `json:"open"`
	// Ended is how many ended within Window, and Median their median
	// duration (zero when none ended).
	Ended  int           `json:"ended"`
	Median time.Duration `json:"median"`
	Window time.Duration `json:"window"`
}

// Instance states: the names of the states of the one vocabulary
// (api.State.String), which Instance.State holds as display strings;
// TestStateNamesAreTheInstanceStates holds the two together.
const (
	StatePending   = "pending"
	StateStarting  = "starting"
	StateInService = "in_service"
	StateDraining  = "draining"
	StateStopped   = "stopped"
	StateUnhealthy = "unhealthy"
	StateFailed    = "failed"
)

// Instance is one running copy of a release.
type Instance struct {
	ID      string `json:"id"`
	Release int    `json:"release"`
	State   string `json:"state"`  // one of the State constants: the name of an api.State
	Health  string `json:"health"` // free text: "passing", "failing: 503 from /healthz", ...
	Addr    string `json:"addr"`
	// Host is the machine the instance runs on ("local" on one machine)
	// and Zone its zone label; both empty before it is placed.
	Host string `json:"host"`
	Zone string `json:"zone,omitempty"`
	// Uptime is the time since the instance started; zero when not started.
	Uptime time.Duration `json:"uptime"`
	RPS    float64       `json:"rps"`
	CPU    float64       `json:"cpu"` // cores in use (1.0 = one core)
	RSS    int64         `json:"rss"` // resident memory, bytes
}

// Fleet is the hosts of a fleet as the overview's hosts card shows them.
type Fleet struct {
	// Hosts are sorted by name.
	Hosts []Host `json:"hosts"`
	// Balancers are the balancer nodes that follow the server, sorted by
	// name; none on one machine.
	Balancers []BalancerNode `json:"balancers"`
	// Events are the latest host events (joined, lost, back, draining),
	// newest first, at most ten, each of KindHost.
	Events []Event `json:"events"`
}

// Host is one host of a fleet.
type Host struct {
	Name string `json:"name"`
	// Region and Zone are the host's labels ("" for none).
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// State is "joining", "ready", "draining" or "unreachable" (the
	// names of api.HostState), and Reason why when it is not ready.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// CPU (cores) and Memory (bytes) are the host's capacity, zero when
	// unbounded; UsedCPU and UsedMemory what its instances declared.
	CPU        float64 `json:"cpu"`
	UsedCPU    float64 `json:"used_cpu"`
	Memory     int64   `json:"memory"`
	UsedMemory int64   `json:"used_memory"`
	Instances  int     `json:"instances"`
	// LastHeartbeat is when the host last answered; zero if never.
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

// BalancerNode is one balancer node of a fleet (api.BalancerNodeStatus).
type BalancerNode struct {
	Name string `json:"name"`
	// Addr is the address its last call to the server came from.
	Addr string `json:"addr"`
	// State is "ready" (following), "joining" (no call yet in this run
	// of the server) or "unreachable", and Reason why when not ready.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Applied is the configuration version the node applied, Version the
	// server's latest.
	Applied uint64 `json:"applied"`
	Version uint64 `json:"version"`
	// LastSeen is its last call; zero if none in this run of the server.
	LastSeen time.Time `json:"last_seen"`
}

// Target is one balancer target with its state ("healthy", "unhealthy",
// "ejected", "draining") and the reason for it.
type Target struct {
	Addr     string `json:"addr"`
	Instance string `json:"instance"` // instance ID, when known
	State    string `json:"state"`
	Reason   string `json:"reason"`
	InFlight int    `json:"in_flight"`
}

// Deploy is a rolling deploy's progress.
type Deploy struct {
	Active bool `json:"active"`
	From   int  `json:"from"`
	To     int  `json:"to"`
	// Done counts instances of To in service, out of Total.
	Done  int    `json:"done"`
	Total int    `json:"total"`
	Phase string `json:"phase"` // "launching", "waiting for health", "draining", "done", "rolled back: ..."
	// Rollback is set when this deploy goes back to an earlier release.
	Rollback bool      `json:"rollback"`
	Started  time.Time `json:"started"`
}

// Event kinds.
const (
	KindDeploy  = "deploy"
	KindScale   = "scale"
	KindReplace = "replace"
	KindHealth  = "health"
	KindState   = "state"
	// KindHost is an event of a fleet's host (Fleet.Events).
	KindHost = "host"
)

// Event is one thing that happened, with its reason. Seq increases by one
// for each event.
type Event struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	App      string    `json:"app"`
	Instance string    `json:"instance,omitempty"`
	Kind     string    `json:"kind"` // one of the Kind constants (others are shown as they are)
	Reason   string    `json:"reason"`
}

// Release is one immutable numbered release of an app.
type Release struct {
	Version   int       `json:"version"`
	Digest    string    `json:"digest"`
	CreatedAt time.Time `json:"created_at"`
	Change    string    `json:"change"` // what changed: "build abc123", "env: FOO", ...
	Status    string    `json:"status"` // "current", "deploying", "previous", "failed", ...
}

// InstanceDetail is one instance with its app and its events.
type InstanceDetail struct {
	Instance
	App    string  `json:"app"`
	Events []Event `json:"events"`
}

// RegionHosts are the hosts of one region, for the hosts card.
type RegionHosts struct {
	// Region is the label ("" for hosts without one).
	Region string
	Hosts  []Host
}

// Regions groups f's hosts by region, the regions sorted by name (hosts
// without a region last) and each region's hosts in f's order.
func (f Fleet) Regions() []RegionHosts {
	var out []RegionHosts
	at := map[string]int{}
	for _, h := range f.Hosts {
		i, ok := at[h.Region]
		if !ok {
			i = len(out)
			at[h.Region] = i
			out = append(out, RegionHosts{Region: h.Region})
		}
		out[i].Hosts = append(out[i].Hosts, h)
	}
	slices.SortStableFunc(out, func(a, b RegionHosts) int {
		switch {
		case a.Region == b.Region:
			return 0
		case a.Region == "":
			return 1
		case b.Region == "":
			return -1
		}
		return strings.Compare(a.Region, b.Region)
	})
	return out
}
