package api

import "time"

// The host agent's API (`shoal agent`, package agent; its client is package
// agentclient). The server drives a remote host with these bodies over
// mutual TLS:
//
//	POST   /v1/instances                 LaunchSpec -> InstanceInfo   (mutating)
//	DELETE /v1/instances/{id}            204                          (mutating)
//	GET    /v1/instances                 InstanceList
//	GET    /v1/exits?epoch=E&after=N     ExitsPage (long poll)
//	GET    /v1/instances/{id}/logs       text/plain stream (?tail=N&follow=1)
//	GET    /v1/instances/{id}/stats      InstanceStats
//	GET    /v1/host                      HostInfo
//
// Errors are ErrorBody with a status: 400 bad input, 404 unknown instance,
// 409 a stale term (or an id running another artifact), 410 exits no longer
// held (list instead), 501 a container instance on an agent with no Docker
// engine, 502 an artifact that could not be fetched or did not match its
// digest.

// TermHeader carries the leader's term, a positive decimal integer, on every
// mutating request to an agent (issue 14: agents refuse actions from an older
// term). The agent also sets it on a 409 answer to a stale term, to the term it
// holds.
const TermHeader = "Shoal-Term"

// ServersHeader is set by a server on every answer of its fleet listener:
// the fleet URLs of the cluster's servers that it knows (its own and
// those the cluster recorded), comma-separated. Agents and balancer nodes
// keep them and try them after the servers of their file (issue 14).
const ServersHeader = "Shoal-Servers"

// LaunchSpec asks an agent to run one instance: the body of POST /v1/instances.
// Starting is idempotent by ID: a retried start of an instance that runs
// answers its InstanceInfo and starts nothing.
type LaunchSpec struct {
	// ID names the instance; letters, digits, '.', '_' and '-' only.
	ID      string `json:"id"`
	App     string `json:"app"`
	Release int    `json:"release"`
	// Digest is the artifact the instance runs from ("sha256:<hex>"); the
	// agent fetches it from the server when it does not hold it.
	Digest string `json:"digest"`
	// Command is run by /bin/sh -c in the unpacked artifact. With Runtime
	// "docker" it replaces the image's CMD (split on spaces) when not
	// empty.
	Command string `json:"command"`
	// Runtime is "docker" for an instance run as a container of the image
	// the artifact holds (a saved image), loaded into the agent's engine
	// when it lacks it; empty runs a process. An agent with no engine
	// answers 501.
	Runtime string `json:"runtime,omitempty"`
	// Port is the port the app listens on inside the container (Runtime
	// "docker"), published on a port the agent chooses; 0 runs the
	// container on the host's network, where the app listens on PORT.
	Port int `json:"port,omitempty"`
	// Env is NAME=value, secrets included. The agent adds PORT and the
	// address to bind (HOST, BIND_IP), which Env cannot override.
	Env []string `json:"env,omitempty"`
	// Secrets are values the agent replaces in the instance's output
	// before it writes its log.
	Secrets []string `json:"secrets,omitempty"`
	// StopSignal is the signal's name ("SIGTERM", "SIGINT"); empty means
	// SIGTERM.
	StopSignal string `json:"stop_signal,omitempty"`
	// StopTimeoutMS is how long a stop waits after StopSignal before
	// SIGKILL, in milliseconds; zero means 10 s.
	StopTimeoutMS int64 `json:"stop_timeout_ms,omitempty"`
	// Labels are kept with the instance and reported back in InstanceInfo;
	// the agent sets "app", "release" and "digest" itself.
	Labels map[string]string `json:"labels,omitempty"`
}

// StopTimeout returns StopTimeoutMS as a duration.
func (s LaunchSpec) StopTimeout() time.Duration {
	return time.Duration(s.StopTimeoutMS) * time.Millisecond
}

// InstanceInfo describes an instance running on an agent.
type InstanceInfo struct {
	ID  string `json:"id"`
	PID int    `json:"pid"`
	// Addr is advertise-address:port, where the balancer reaches the
	// instance from other hosts.
	Addr    string            `json:"addr"`
	Started time.Time         `json:"started"`
	App     string            `json:"app"`
	Release int               `json:"release"`
	Digest  string            `json:"digest"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// InstanceList is the answer of GET /v1/instances: what runs on the agent,
// sorted by ID. Every instance that ends after the list was taken has an exit
// with a sequence number greater than ExitSeq in the exits of Epoch, so a
// server that adopts the list and then follows the exits from (Epoch,
// ExitSeq) misses no end.
type InstanceList struct {
	Epoch     string         `json:"epoch"`
	ExitSeq   uint64         `json:"exit_seq"`
	Instances []InstanceInfo `json:"instances"`
}

// InstanceExit reports the end of an instance on an agent.
type InstanceExit struct {
	// Seq numbers the exits of one epoch of the agent from 1, without gaps.
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
	// Code is the exit status, or -1 when a signal killed the process.
	Code int `json:"code"`
	// Signal names the signal that killed it ("SIGKILL"), or is empty.
	Signal string `json:"signal,omitempty"`
	// Stopped is true when the exit followed a stop.
	Stopped bool      `json:"stopped"`
	At      time.Time `json:"at"`
	// LogTail holds the last lines of the instance's output.
	LogTail string `json:"log_tail,omitempty"`
	// Ended marks a hint, not an exit: the instance's process was seen to
	// end (a container's, through a pidfd, before its engine reports it a
	// few hundred milliseconds later); the exit with its status follows
	// in a later record of the same ID. A reader takes the instance out of
	// service at once (every request sent to it meanwhile fails) and ends
	// it only at that later record. Code and the other fields are unset.
	Ended bool `json:"ended,omitempty"`
}

// ExitsPage is the answer of GET /v1/exits: the exits of Epoch with a
// sequence number greater than the one asked for, oldest first (none when
// the long poll's wait ended without one). Last is the highest sequence
// number of the epoch so far.
type ExitsPage struct {
	Epoch string         `json:"epoch"`
	Last  uint64         `json:"last"`
	Exits []InstanceExit `json:"exits"`
}

// InstanceStats is the resource use of one instance's live processes.
type InstanceStats struct {
	// CPUSeconds is user+system CPU time of the live processes; rates
	// come from successive samples.
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
	Processes  int     `json:"processes"`
}

// HostInfo describes the agent's host: the answer of GET /v1/host.
type HostInfo struct {
	Name string `json:"name"`
	// Addr is the advertise address, the IP that instances bind and the
	// balancer dials.
	Addr        string `json:"addr"`
	CPUs        int    `json:"cpus"`
	MemoryBytes int64  `json:"memory_bytes"`
	// Load1, Load5 and Load15 are the load averages of /proc/loadavg.
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
	// Term is the highest leader term the agent has seen.
	Term uint64 `json:"term"`
	// Epoch names this run of the agent (its exits' sequence).
	Epoch     string `json:"epoch"`
	Instances int    `json:"instances"`
	// Containers says the agent has a Docker engine and runs container
	// instances: the server places containers on a host that refused one
	// (no engine then) again once its agent says so (issue 16).
	Containers bool `json:"containers,omitempty"`
}
