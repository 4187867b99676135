package controller

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// Host runs instances for the controller. On one machine it is the local
// runtime (see NewLocalHost); in a fleet it will be a client of a host
// agent. Implementations must be safe for concurrent use.
type Host interface {
	// Name identifies the host in status output and events ("local").
	Name() string
	// Start launches an instance and returns once its process runs (not
	// once it is healthy). The host makes the artifact's tree available,
	// chooses a free port and sets PORT. An error means nothing runs; an
	// error wrapping ErrNoCapacity means no host can take the instance
	// now (the controller keeps it pending with the reason and retries).
	Start(ctx context.Context, spec LaunchSpec) (Running, error)
	// Stop sends the instance its stop signal, then SIGKILL to its whole
	// process group after its stop timeout, and returns once it has exited.
	// Stopping an unknown or exited instance returns nil.
	Stop(ctx context.Context, id string) error
	// Exits delivers one Exit for every instance that ends, whether it
	// crashed or was stopped. The channel is owned by the host and never
	// closed while the host is open; the controller reads it until its Run
	// ends.
	Exits() <-chan Exit
	// Logs writes the last tail lines of the instance's output to w (all
	// when tail <= 0) and, with follow, keeps writing new lines until ctx
	// ends. It returns an error wrapping ErrUnknownInstance for an unknown
	// instance.
	Logs(ctx context.Context, id string, tail int, follow bool, w io.Writer) error
	// Stats returns the resource use of a running instance.
	Stats(id string) (Stats, error)
}

// Ender is implemented by a Host that can tell that an instance's process
// ended before it can report the Exit: a docker host sees the process end
// at once but learns its exit status from the engine a few hundred
// milliseconds later. The controller takes such an instance out of the
// balancer's pool as soon as it is named (every request sent to a dead
// target costs a retry, and a balancer's retry budget runs dry in that
// time under load); its Exit follows as usual.
type Ender interface {
	Ended() <-chan string
}

// ErrNoCapacity is wrapped by a Host's Start error when no host can take
// the instance now (none ready, or its declared CPU or memory fits none):
// the condition passes when hosts join, come back or free capacity.
var ErrNoCapacity = errors.New("no capacity")

// LaunchSpec says what to run for one instance.
type LaunchSpec struct {
	ID      string
	App     string
	Release int
	// Digest is the artifact the instance runs from; the host unpacks it
	// (or fetches and unpacks it, on a remote host).
	Digest  string
	Command string
	// Env is NAME=value, secrets included; never logged. PORT is added by
	// the host.
	Env []string
	// Secrets are the secret values of Env and of any other release
	// running meanwhile (config.Env.SecretValues): the host replaces them
	// in the instance's output before it stores it (runtime.Spec.Secrets).
	Secrets     []string
	StopSignal  syscall.Signal
	StopTimeout time.Duration
	// CPU (cores) and Memory (bytes) are what the instance declares it
	// needs; a fleet places it only where they fit the host's capacity
	// left. Zero declares nothing; a LocalHost ignores both.
	CPU    float64
	Memory int64
	// Runtime is the release's runtime: "docker" runs the artifact as a
	// container image (a DockerHost), anything else as a process. Port is
	// the port inside the container (0: the published port's number).
	Runtime string
	Port    int
}

// Running describes a started instance.
type Running struct {
	// Addr is host:port where the instance serves HTTP.
	Addr    string
	PID     int
	Started time.Time
	// Host names the machine the instance runs on: "local" on a
	// LocalHost, the fleet host's name in a fleet. Zone is that host's
	// zone label ("" when it has none).
	Host string
	Zone string
}

// Exit reports the end of an instance's process.
type Exit struct {
	ID string
	// Code is the exit status, or -1 when killed by a signal.
	Code   int
	Signal string // signal name when killed by one
	// Stopped is true when the exit followed a Stop.
	Stopped bool
	At      time.Time
	// Reason, when set, says that the host reports the instance ended
	// without seeing its process end ("host h2 unreachable for 5s"): the
	// process may still run out of reach, and the host stops it when it
	// can. The controller shows the reason instead of an exit status and
	// does not count it as a crash of the release.
	Reason string
}

// Stats is the resource use of one instance (its whole process group).
type Stats struct {
	// CPUSeconds is user+system CPU time of the live processes; rates
	// come from successive samples.
	CPUSeconds float64
	RSSBytes   int64
}
