package api

import "fmt"

// State is the lifecycle state of an instance, printed, sent and persisted
// as its snake_case name (JSON and text encodings use the name).
//
//	pending --> starting --> in_service --> draining --> stopped
//	               |             |   ^
//	               |  (exit or   |   | (checks pass again)
//	               |  no health  v   |
//	               |  in grace) unhealthy --(replacement in service)--> draining
//	               v
//	             failed  (exited, or never healthy: stopped at once, replaced)
//
// The zero value is Pending.
type State uint8

// Instance states. Pending and Starting both mean "launched, not yet in
// service".
const (
	Pending   State = iota // accepted, not yet started on its host
	Starting               // process started, not yet passing its health checks
	InService              // healthy and in the balancer's pool
	Unhealthy              // was in service, now fails its checks
	Draining               // out of the pool, in-flight requests finishing
	Stopped                // stopped on purpose
	Failed                 // exited on its own, or never became healthy
)

var stateNames = [...]string{"pending", "starting", "in_service", "unhealthy", "draining", "stopped", "failed"}

// String returns the snake_case name of s, or "state(N)" for a value that
// is not one of the states.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState parses a name printed by [State.String].
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown instance state %q", name)
}

// MarshalText encodes s as its name; a value that is not a state is an
// error, so that no unknown name is ever sent or stored.
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("invalid instance state %d", uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText decodes a name printed by [State.String].
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Terminal reports whether s is an end state (stopped or failed).
func (s State) Terminal() bool { return s == Stopped || s == Failed }

// Live reports whether an instance in state s still runs (or is about to
// run) a process: any state up to and including Draining.
func (s State) Live() bool { return s <= Draining }
