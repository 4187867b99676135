// Package runtime runs app instances on this host as local processes: it picks a free
// port, builds the environment, starts the command in its own process group, captures
// stdout and stderr into size-rotated log files, reports every exit exactly once, stops
// instances with a grace period before SIGKILL, and makes sure no instance outlives Shoal.
//
// Working directories. An instance runs with its current directory set to the unpacked
// release (Spec.Dir), which is shared by every instance of that release and must be
// treated as read-only: that is a contract, not enforced. Each instance also gets a private
// directory <data>/instances/<id>/ holding its logs (out.log, out.log.1, ...) and a tmp/
// folder; the process sees them as SHOAL_INSTANCE_DIR and TMPDIR. Anything an app writes
// per instance belongs there. The folder outlives the instance so that its logs can be
// read after it ended; the newest Options.KeepStopped folders of ended instances are kept
// (DefaultKeepStopped, 20) and older ones removed after each exit and at CleanLeftovers.
//
// Orphans. Each instance is started with Setpgid (its own process group, so Stop reaches
// the whole tree) and Pdeathsig=SIGKILL (the kernel kills the direct child when Shoal
// dies, even by SIGKILL). Pdeathsig fires when the *thread* that forked the child exits,
// not the process, and the Go runtime ends a thread whose goroutine exits while locked to
// it; so all forks happen on one goroutine that locks its OS thread for the whole life of
// the Local and exits only after every instance is reaped (see spawner). Pdeathsig only
// reaches the direct child, so every instance's process group is also recorded in
// <data>/runtime/pids/<id>, and CleanLeftovers kills groups left by a previous run that
// died. A simple command (no shell operators) is run with `exec`, so the app itself, not
// an intermediate shell, is the direct child. No child subreaper is used: it would make
// Shoal the parent of every orphaned grandchild, and reaping those would race with the
// per-instance Wait.
//
// Processes that leave their group (setsid, double fork into a new group) are not tracked.
//
// Detached mode (Options.Detached). All of the above ties instances to this process,
// which is right for `shoal up`; an agent must instead restart (upgrade, crash) without
// touching its instances. In detached mode each instance runs under a shim of its own
// (shim.go): this executable started again, in its own session, whose main calls
// ShimMain. The shim is the app's parent (Setpgid and Pdeathsig as above, so the app dies
// if its shim is killed), holds its output pipe, redacts and rotates the log with the
// same code (group.go), carries out stops and their escalation, and records the end in
// <data>/instances/<id>/exit.json before it exits. Spec, environment and secrets reach it
// on a pipe, never on disk or in argv. The Local watches each shim through a pidfd and
// talks to it over a 0600 Unix socket in the instance folder (ctl.sock: stop, kill,
// follow); the pid record also names the shim, with its start time. Close leaves
// detached instances running; a later Local's Adopt finds them again (a reused pid is
// never adopted), reports once the ends it missed, and cleans what cannot be adopted.
// Every other method keeps its contract. One Local per data directory at a time.
package runtime

import (
	"errors"
	"syscall"
	"time"
)

// ErrNotFound is returned (wrapped) for an instance id this Local does not run.
var ErrNotFound = errors.New("instance not found")

// ErrExists is returned (wrapped) by Start for an id that is already running.
var ErrExists = errors.New("instance already exists")

// ErrClosed is returned (wrapped) by Start after Close.
var ErrClosed = errors.New("runtime closed")

// Spec describes one instance to start. It is a plain value, safe to encode.
type Spec struct {
	// ID names the instance, e.g. "web-v3-7f2a". It must be unique among running
	// instances and use only letters, digits, '.', '_' and '-' (it names directories).
	ID string `json:"id"`
	// Dir is the unpacked release the process runs in (its working directory).
	Dir string `json:"dir"`
	// Command is run as `/bin/sh -c Command`, e.g. "node main.js".
	Command string `json:"command"`
	// Env is added to the environment, as "KEY=value". The runtime passes PATH and HOME
	// from the host, then Env, then sets PORT, SHOAL_INSTANCE_ID, SHOAL_INSTANCE_DIR and
	// TMPDIR (those four cannot be overridden).
	Env []string `json:"env,omitempty"`
	// Secrets are values that must never reach the disk: every occurrence
	// in the instance's output is replaced by RedactedMark before it is
	// written to the log, also when the app writes a value in pieces (each
	// line of a multi-line value is hidden on its own). Values shorter than
	// four bytes are left alone, since scrubbing them would garble any
	// text. A partial last line is held back (up to 64 KiB) until its
	// newline or the instance's end. Nil means the output is written as
	// it comes.
	Secrets []string `json:"secrets,omitempty"`
	// StopSignal is sent to the process group by Stop. Zero means SIGTERM.
	StopSignal syscall.Signal `json:"stop_signal,omitempty"`
	// StopTimeout is how long Stop waits after StopSignal before SIGKILL. Zero means 10s.
	StopTimeout time.Duration `json:"stop_timeout,omitempty"`
	// Labels are carried into Info unchanged (app, release, ...).
	Labels map[string]string `json:"labels,omitempty"`
}

func (s Spec) stopSignal() syscall.Signal {
	if s.StopSignal == 0 {
		return syscall.SIGTERM
	}
	return s.StopSignal
}

func (s Spec) stopTimeout() time.Duration {
	if s.StopTimeout <= 0 {
		return 10 * time.Second
	}
	return s.StopTimeout
}

// Info describes a running instance. It is a snapshot, safe to keep and encode.
type Info struct {
	ID        string            `json:"id"`
	PID       int               `json:"pid"`
	PGID      int               `json:"pgid"`
	Port      int               `json:"port"`
	Addr      string            `json:"addr"` // "127.0.0.1:<port>"
	Dir       string            `json:"dir"`
	WorkDir   string            `json:"work_dir"` // <data>/instances/<id>
	LogPath   string            `json:"log_path"`
	Command   string            `json:"command"`
	StartedAt time.Time         `json:"started_at"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Exit reports the end of one instance. Exactly one Exit is delivered per started
// instance, after its output has been fully written to its log. In detached mode that is
// by the Local that watches the instance when it ends, or else by the next Adopt.
type Exit struct {
	ID  string `json:"id"`
	PID int    `json:"pid"`
	// Code is the exit status of the direct child, or -1 if it was killed by a signal.
	Code int `json:"code"`
	// Signal names the signal that killed the direct child ("SIGKILL"), or is empty.
	Signal string `json:"signal,omitempty"`
	// Stopped is true when the exit followed a Stop or Close.
	Stopped bool `json:"stopped"`
	// Killed is true when Stop had to escalate to SIGKILL.
	Killed bool `json:"killed"`
	// Err is a description of a failure to wait for the process, normally empty.
	Err string    `json:"error,omitempty"`
	At  time.Time `json:"at"`
	// Labels are the instance's Spec.Labels.
	Labels map[string]string `json:"labels,omitempty"`
	// LogTail holds the last lines of the instance's output (at most 20), to show why
	// it ended without opening the log.
	LogTail string `json:"log_tail,omitempty"`
}

// Stats is a resource snapshot of an instance's live processes.
type Stats struct {
	// CPUSeconds is user+system CPU time consumed by the live processes of the group.
	// CPU of children that already exited is not included, so it can go down when a
	// process exits; callers compute rates from successive samples of a steady process.
	CPUSeconds float64 `json:"cpu_seconds"`
	// RSSBytes is the summed resident set size of the live processes of the group.
	RSSBytes int64 `json:"rss_bytes"`
	// Processes is how many live processes the group has.
	Processes int `json:"processes"`
}
