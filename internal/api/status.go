package api

import (
	"fmt"
	"time"
)

// Status is a point-in-time view of one group and its instances: the answer
// of GET /v1/status and POST /v1/scale. The controller fills every field but
// Maintenance, which the admin API adds from the balancer in front of the
// group, Timing, which it adds from the same balancer, and Hosts, which
// it adds from the fleet.
type Status struct {
	App     string `json:"app"`
	Host    string `json:"host"`
	Release int    `json:"release"`
	Digest  string `json:"digest"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
	Desired int    `json:"desired"`
	// InService counts instances in service.
	InService int `json:"in_service"`
	// Backoff is the current crash-loop message, while launches are held.
	Backoff string `json:"backoff,omitempty"`
	// Crash is the last crash of an instance of the current release while
	// that release is crashing in a row (until one instance is stable);
	// nil otherwise.
	Crash *Crash `json:"crash,omitempty"`
	// Instances are oldest first (by start, then ID); never nil.
	Instances []InstanceStatus `json:"instances"`
	// Events is set while events, or changes of stored state that record
	// an outcome (a release failed, a rollout's end), cannot be written to
	// the store (a full disk): the changes and how many events wait to be
	// retried, and the last error.
	Events string `json:"events_problem,omitempty"`
	// Maintenance is true while the balancer answers every request with
	// 503 (shoal maintenance on).
	Maintenance bool `json:"maintenance"`
	// Hosts are the fleet's hosts, sorted by name, when the admin API
	// serves a fleet (adminapi.WithHosts); nil for shoal up.
	Hosts []HostStatus `json:"hosts,omitempty"`
	// Timing is where the time of the group's requests went since the
	// balancer started, the app's beside the network's: the routes to the
	// group's pool, then the listeners that carry them (a listener's
	// figures include every route it carries). Nil without a balancer or
	// before the first request.
	Timing []TimingStatus `json:"timing,omitempty"`
}

// TimingStatus is the timing of one route or listener in Status.
type TimingStatus struct {
	// Kind is "route" or "listener".
	Kind string `json:"kind"`
	Name string `json:"name"`
	RequestTiming
}

// InstanceStatus is one instance in Status.
type InstanceStatus struct {
	ID      string `json:"id"`
	Release int    `json:"release"`
	State   State  `json:"state"`
	// Reason is the controller's last word on the state.
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Healthy and Health are the last health check's verdict and detail
	// ("unknown" before the first check).
	Healthy bool   `json:"healthy"`
	Health  string `json:"health"`
	Addr    string `json:"addr,omitempty"`
	PID     int    `json:"pid,omitempty"`
	// Host is the name of the machine the instance runs on ("local" for
	// shoal up's), and Zone its zone label; empty until it has started.
	Host string `json:"host,omitempty"`
	Zone string `json:"zone,omitempty"`
	// Started is when the process started; zero while pending.
	Started time.Time `json:"started,omitzero"`
	// UptimeSeconds is the time since Started.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// RequestsPerSecond is measured at the balancer over the last second.
	RequestsPerSecond float64 `json:"requests_per_second"`
	// Replaces is the ID of the unhealthy instance this one replaces, or
	// of the instance it moves off a draining host.
	Replaces string `json:"replaces,omitempty"`
	// Moving, when set, says that the instance is being moved off its
	// host and why ("off host h1 (draining)"): a replacement is launched
	// first, and the instance stops once the replacement serves.
	Moving string `json:"moving,omitempty"`
}

// Crash is the last exit that nobody asked for of an instance of one
// release: why it ended and what it printed last, so that an app that fails
// on boot says why on the console, in `shoal status` and in its events, not
// only in a log file.
type Crash struct {
	Instance string `json:"instance"`
	Release  int    `json:"release"`
	// Exit is "exit 1" or "killed by SIGSEGV".
	Exit string `json:"exit"`
	// UptimeSeconds is the time from the process's start (or from its
	// launch, when the exit was reported first) to its exit.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Message is the line of its output that most likely says why (the
	// last one that reads like an error, else the last one); empty when
	// it printed nothing.
	Message string `json:"message,omitempty"`
	// Logs are the last lines of its output, secrets redacted.
	Logs []string `json:"logs,omitempty"`
	// InARow counts the crashes of the release in a row (the crash-loop
	// count); 0 once an instance of it has been stable.
	InARow int       `json:"in_a_row"`
	At     time.Time `json:"at"`
}

// Summary is one line: "exit 1 after 0.2s: Error: Cannot find module ...".
func (cr Crash) Summary() string {
	s := fmt.Sprintf("%s after %s", cr.Exit, RoundUptime(time.Duration(cr.UptimeSeconds*float64(time.Second))))
	if cr.Message != "" {
		s += ": " + cr.Message
	}
	return s
}

// RoundUptime rounds d for messages to people: milliseconds under a second,
// tenths under ten seconds, seconds under an hour, then minutes.
func RoundUptime(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d < time.Hour:
		return d.Round(time.Second)
	default:
		return d.Round(time.Minute)
	}
}

// ScaleRequest is the body of POST /v1/scale. Desired is required (nil is
// a bad request) and must lie within the group's min-max.
type ScaleRequest struct {
	Desired *int `json:"desired"`
}
