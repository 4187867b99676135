// Package pool owns the targets of one balancer pool: their state and the
// reason for it, weights, slow start, in-flight counts, latency estimates,
// passive ejection (outlier detection), draining, and the choice of a target
// for a request (balancing algorithm plus stickiness).
//
// A Pool is safe for concurrent use. The proxy in package lb calls Pick,
// Target.Begin and Target.End on the hot path; the health checker calls
// SetHealth; the admin API and the controller call Add, Drain, Remove and
// SetWeight.
//
// Target states (derived from the active health verdict, passive ejection
// and draining; draining wins, then unhealthy, then ejected):
//
//	           SetHealth(false)                 ConsecutiveFailures
//	healthy  ------------------>  unhealthy     healthy ----------> ejected
//	   ^  |  <------------------                   ^                  |
//	   |  |      SetHealth(true)                   +-- time, or a ----+
//	   |  |                                        ProbePassed after the ejection
//	   |  | Drain / Remove (from any state)
//	   |  v
//	 draining --(in-flight reaches 0, or the deadline cancels Target.Context)--> idle
//	   |                                                   (Remove: deleted)
//	   +--Undrain (not after Remove)--> healthy, unhealthy or ejected, as derived
//
// Picking is lock-free: membership and state changes rebuild an immutable
// snapshot of the eligible targets that Pick loads with one atomic read.
// Time-driven changes (end of an ejection, slow-start steps) are applied
// lazily by the first Pick or Status call after they are due, so a Pool
// owns no goroutine and needs no Close. Drain deadlines use time.AfterFunc
// timers that are stopped when the target goes idle.
//
// CONTRACT FILE: the exported API below is the agreement between package lb
// (the consumer) and this package (the implementer). Change a signature only
// together with its callers.
package pool

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Sentinel errors.
var (
	ErrNoTarget = errors.New("no target available")
	ErrNotFound = errors.New("target not found")
	ErrExists   = errors.New("target already exists")
	// ErrDrainDeadline is the cancel cause of Target.Context when the drain
	// deadline passes while streams are still open.
	ErrDrainDeadline = errors.New("target drain deadline reached")
	// ErrRemoving is Undrain's answer for a target that is being removed.
	ErrRemoving = errors.New("target is being removed")
)

// Algorithm chooses among the eligible targets of a pool.
type Algorithm uint8

const (
	// RoundRobin is smooth weighted round robin.
	RoundRobin Algorithm = iota
	// LeastRequests picks the target with the fewest in-flight requests
	// relative to its weight.
	LeastRequests
	// P2C draws two distinct targets uniformly at random and keeps the one
	// with the lower cost EWMA(TTFB) x (in-flight+1) / effective weight.
	// The EWMA has alpha 0.3 per response (a sample's influence halves
	// after two responses); a target with no sample yet borrows the other
	// candidate's estimate so it is compared on load alone.
	P2C
)

// State is the serving state of a target, persisted and printed as a string.
type State uint8

const (
	StateHealthy   State = iota // receives new requests
	StateUnhealthy              // failed active checks; no new requests
	StateEjected                // passively ejected for a while; no new requests
	StateDraining               // being drained; no new requests, in-flight finish
)

// Sticky configures session affinity. The zero value disables it.
type Sticky struct {
	// Cookie is the name of the balancer-inserted cookie; empty disables
	// cookie stickiness.
	Cookie string
	// TTL is the cookie lifetime; zero means a session cookie.
	TTL time.Duration
	// Secret signs cookie values (HMAC-SHA256) so a client cannot choose an
	// arbitrary target. Must be at least 16 bytes when Cookie is set.
	Secret []byte
	// SockJSPrefixes are path prefixes (such as "/sockjs") under which
	// requests of the form <prefix>/<server>/<session>/<transport> are pinned
	// by <session>, because SockJS (Meteor) sends no session cookie.
	// Sessions map onto targets by weighted rendezvous hashing, so adding a
	// target moves only the sessions it wins and removing one moves only
	// its own. Such requests ignore the cookie and get none.
	SockJSPrefixes []string
}

// Outlier configures passive ejection. The zero value disables it.
type Outlier struct {
	// ConsecutiveFailures ejects a target after this many consecutive
	// connection errors or 5xx responses. Zero disables passive ejection.
	ConsecutiveFailures int
	// BaseEjection is the first ejection time (default 30s); each further
	// ejection of the same target multiplies it (1x, 2x, 3x ...) up to
	// MaxEjection. The multiplier starts again at 1x once a target has
	// served for MaxEjection since its last ejection ended.
	BaseEjection time.Duration
	// MaxEjection caps one ejection (default 300s, at least BaseEjection).
	MaxEjection time.Duration
	// MaxEjectedPercent caps the share of non-draining targets ejected at
	// once (1-100, default 50). An ejection that would exceed it does not
	// happen and is logged at Warn.
	MaxEjectedPercent int
}

// Options configures a Pool. Zero values take the defaults noted.
type Options struct {
	Name      string
	Algorithm Algorithm
	// SlowStart ramps a new (or newly healthy) target's effective weight
	// linearly from 10% to 100% over this window. Zero disables it.
	SlowStart time.Duration
	// DrainTimeout bounds Remove's drain; default 30s.
	DrainTimeout time.Duration
	// Sticky configures cookie and SockJS affinity. A cookie with a Secret
	// shorter than 16 bytes is disabled (logged at Error; see Validate).
	Sticky  Sticky
	Outlier Outlier
	// Now replaces time.Now for ejection, slow start and cookie expiry;
	// nil means time.Now. Drain deadlines use real timers (tests use
	// testing/synctest for those).
	Now func() time.Time
	// Rand returns a uniform int in [0,n); nil means math/rand/v2.IntN.
	// It must be safe for concurrent use.
	Rand func(n int) int
	// OnChange, when set, is called after every change of the pool's
	// membership, a target's weight or a target's state (Add, the end of a
	// Remove, Drain, Undrain, SetWeight, health verdicts, ejections and
	// their ends): not for load, latency or slow-start steps. It is called
	// without the pool's lock held, possibly from several goroutines at
	// once and from the proxy's hot path, so it must return at once (a
	// non-blocking signal). It says that something changed, not what: the
	// receiver reads Status. Nil costs nothing.
	OnChange func()
	// Logger receives state transitions (Info) and refused ejections
	// (Warn); nil discards. Its lines carry the target, not the pool's
	// name: the owner adds that once (the balancer passes a logger
	// With("pool", name)), so a line never holds the key twice.
	Logger *slog.Logger
}

// TargetSpec describes a target to add.
type TargetSpec struct {
	Addr   string // host:port
	Weight int    // relative weight, 1-256; 0 means 1; others are an error
	// Unhealthy starts the target out of rotation until SetHealth(true).
	Unhealthy bool
}

// Outcome is what the proxy reports about one attempt on a target.
type Outcome struct {
	ConnErr bool          // connect, reset or timeout before a response
	Status  int           // response status; 0 when ConnErr
	TTFB    time.Duration // upstream time to first byte
}

// Choice is the result of Pick.
type Choice struct {
	Target *Target
	// Cookie, when non-nil, must be added to the response (Set-Cookie)
	// because the client was pinned or re-pinned, or because its pin is
	// past half its TTL and is refreshed. Always nil without cookie
	// stickiness.
	Cookie *http.Cookie
	// FailOpen reports that no target was healthy and the pick was made
	// among all targets.
	FailOpen bool
}

// TargetStatus is a point-in-time view of one target for status output.
type TargetStatus struct {
	Addr string
	// State is State.String() of the target's state.
	State string
	// Reason is why the target entered State, such as "added",
	// "health check failed: status 500" or "draining".
	Reason   string
	Weight   int
	InFlight int64
	// EffectiveWeight is the weight picks use now, slow start included;
	// 0 when the target is not a candidate (not healthy, or draining).
	EffectiveWeight float64
	EWMA            time.Duration
	// Ejections and Requests are monotonic counters since Add (Requests
	// counts Target.Begin calls).
	Ejections int64
	Requests  int64
	// Since is when the target entered State (Options.Now clock).
	Since time.Time
}

// Status is a point-in-time view of a pool.
type Status struct {
	Name string
	// Healthy counts targets in StateHealthy.
	Healthy int
	// FailOpen reports that no target is healthy and picks are made among
	// all non-draining targets.
	FailOpen bool
	// Targets are in the order they were added.
	Targets []TargetStatus
}

// String returns the configuration name of a: "round_robin",
// "least_requests" or "p2c".
func (a Algorithm) String() string {
	switch a {
	case RoundRobin:
		return "round_robin"
	case LeastRequests:
		return "least_requests"
	case P2C:
		return "p2c"
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// ParseAlgorithm parses the configuration name of an algorithm; the empty
// string means RoundRobin.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "", "round_robin":
		return RoundRobin, nil
	case "least_requests":
		return LeastRequests, nil
	case "p2c":
		return P2C, nil
	}
	return 0, fmt.Errorf("unknown balancing algorithm %q (want round_robin, least_requests or p2c)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (a Algorithm) MarshalText() ([]byte, error) {
	if a > P2C {
		return nil, fmt.Errorf("invalid algorithm %d", uint8(a))
	}
	return []byte(a.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseAlgorithm.
func (a *Algorithm) UnmarshalText(b []byte) error {
	v, err := ParseAlgorithm(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// String returns the printed name of s: "healthy", "unhealthy", "ejected"
// or "draining".
func (s State) String() string {
	switch s {
	case StateHealthy:
		return "healthy"
	case StateUnhealthy:
		return "unhealthy"
	case StateEjected:
		return "ejected"
	case StateDraining:
		return "draining"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState parses a name printed by State.String.
func ParseState(s string) (State, error) {
	for st := StateHealthy; st <= StateDraining; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown target state %q", s)
}

// MaxWeight is the largest target weight.
const MaxWeight = 256

// Validate reports the first problem in o that New would otherwise paper
// over: New never fails, so it falls back to the default for an invalid
// value and disables cookie stickiness with a short secret. Config loaders
// call Validate first.
func (o Options) Validate() error {
	if o.Algorithm > P2C {
		return fmt.Errorf("invalid algorithm %d", uint8(o.Algorithm))
	}
	if o.Sticky.Cookie != "" && len(o.Sticky.Secret) < minSecret {
		return fmt.Errorf("sticky cookie %q: secret must be at least %d bytes", o.Sticky.Cookie, minSecret)
	}
	if o.Sticky.TTL < 0 || o.SlowStart < 0 || o.DrainTimeout < 0 {
		return errors.New("durations must not be negative")
	}
	for _, pre := range o.Sticky.SockJSPrefixes {
		if !strings.HasPrefix(pre, "/") {
			return fmt.Errorf("sockjs prefix %q must start with /", pre)
		}
	}
	ol := o.Outlier
	if ol.ConsecutiveFailures < 0 || ol.BaseEjection < 0 || ol.MaxEjection < 0 {
		return errors.New("outlier: values must not be negative")
	}
	if ol.MaxEjectedPercent < 0 || ol.MaxEjectedPercent > 100 {
		return fmt.Errorf("outlier: max ejected percent %d not in 0-100", ol.MaxEjectedPercent)
	}
	return nil
}
