package api

import "time"

// Event is one recorded change of a group, as the controller records it and
// GET /v1/events sends it: an instance changing state, a scale, a new
// release, a deploy step, a crash-loop backoff. Reasons never hold secret
// values. The store persists it in a record of its own; the dashboard
// classifies it for its timeline.
type Event struct {
	// Seq numbers events 1, 2, 3 ... in the order they were stored; set by
	// the store.
	Seq uint64 `json:"seq"`
	// Time is when it happened; set when the event is recorded, if zero.
	Time time.Time `json:"time"`
	// Type is one of "state", "scale", "release", "deploy", "backoff",
	// "autoscale", "env", "shoal", "move" (instances moved off a
	// draining host), and "host" for the fleet's hosts (package fleet).
	Type     string `json:"type"`
	Instance string `json:"instance,omitempty"`
	Release  int    `json:"release,omitempty"`
	// From and State are the names of the [State]s of a "state" event
	// (strings, since other events have none: "" is no state).
	From  string `json:"from,omitempty"`
	State string `json:"state,omitempty"`
	Addr  string `json:"addr,omitempty"`
	// Reason says why, in words for the operator.
	Reason string `json:"reason"`
}
