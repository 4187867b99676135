// Package agent is the host agent's API: the HTTP handler through which the
// server runs instances on a remote host (issue 12). It serves the server
// only: the caller serves it over TLS with a configuration that requires and
// verifies a client certificate, and the handler itself refuses any request
// that did not present a verified one. The endpoints and bodies are those of
// package api (api/agent.go); package agentclient is their client.
//
// Instances run through a runtime.Local, as under `shoal up`; those of a
// `runtime: docker` release (LaunchSpec.Runtime) as containers of a detached
// dockerrt.Engine whose scope is DataDir (containers.go), from the image
// their artifact (a saved image) holds, loaded once per digest. Their artifacts
// come from an ArtifactSource (the server) by digest, are verified before
// anything of them is kept, stored in a release.Store and unpacked once per
// digest under <DataDir>/releases/. An instance is told to bind the agent's
// advertise address (HOST and BIND_IP) and its chosen port (PORT), and is
// reported at advertise-address:port.
//
// Term fence (issue 14). Every mutating request carries the leader's term in
// api.TermHeader. The agent keeps the highest term it has seen in
// <DataDir>/term (written atomically and fsynced before it acts) and refuses
// an older one with 409. An action admitted before a newer term was recorded
// may still be completing when the newer leader's first action runs.
//
// Exits. Every instance's end gets a sequence number within the agent's epoch
// (a random name for this Agent value, so numbers never repeat across
// restarts) and is kept in a ring of the newest Config.ExitRing exits; the
// server long-polls them. A reader that asks for exits no longer held, or of
// another epoch, gets 410 and lists the instances instead: the list carries
// the cursor from which to follow.
//
// On disk, under Config.DataDir:
//
//	term                 the highest leader term seen ("<n>\n", 0600)
//	releases/<hex>/      unpacked artifacts, one per digest (read-only for instances)
//	tmp/                 artifacts being fetched (emptied at New)
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// DefaultPollWait bounds how long GET /v1/exits waits for an exit before it
// answers an empty page (Config.PollWait).
const DefaultPollWait = 25 * time.Second

// DefaultFetchTimeout bounds the fetch of one artifact (Config.FetchTimeout).
const DefaultFetchTimeout = 10 * time.Minute

// Config configures an Agent.
type Config struct {
	// Runtime runs the instances (a detached *runtime.Local in `shoal
	// agent`). Required. The Agent reads its Exits channel in Run: nothing
	// else may.
	Runtime Runtime
	// Artifacts stores the fetched artifacts. Required.
	Artifacts *release.Store
	// Source fetches artifacts the store does not hold. Required.
	Source ArtifactSource
	// DataDir holds the term file and the unpacked releases. Required.
	DataDir string
	// Name names the host (GET /v1/host); empty means os.Hostname.
	Name string
	// Advertise is the IP address instances bind and are reached at from
	// other hosts. Required.
	Advertise string
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
	// ExitRing is how many exits are kept for the server; zero means
	// DefaultExitRing.
	ExitRing int
	// PollWait bounds a long poll of the exits; zero means DefaultPollWait.
	PollWait time.Duration
	// FetchTimeout bounds the fetch of one artifact; zero means
	// DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Docker runs the container instances (api.LaunchSpec.Runtime
	// "docker"): a Detached engine whose scope is DataDir in `shoal
	// agent`. The Agent reads its Exits in Run: nothing else may. Nil
	// means this host has no engine: a container instance is refused
	// (ErrNoEngine) with NoDocker as the reason.
	Docker   *dockerrt.Engine
	NoDocker string
}

// Runtime is what the agent needs of the runtime that runs its instances:
// the methods of *runtime.Local it calls, with their contracts (package
// runtime). `shoal agent` gives it a detached runtime.Local; the scale
// benchmark (bench/scale) a simulated one whose instances are in-process
// HTTP listeners, so that the real agent API, the fleet and the
// controllers drive a thousand hosts on one machine. Implementations are
// safe for concurrent use.
type Runtime interface {
	// Start runs spec and returns once it runs; its Port is where it
	// listens (on the agent's advertise address).
	Start(ctx context.Context, spec runtime.Spec) (runtime.Info, error)
	// Stop stops instance id and returns once it has exited; an unknown
	// id is an error wrapping runtime.ErrNotFound.
	Stop(ctx context.Context, id string) error
	// Get returns the running instance id, or an error wrapping
	// runtime.ErrNotFound.
	Get(id string) (runtime.Info, error)
	// List returns the running instances.
	List() []runtime.Info
	// Exits delivers one Exit per started instance that ended; it is
	// closed when the runtime is closed.
	Exits() <-chan runtime.Exit
	// Tail writes the last n lines of id's output to w and, with follow,
	// new lines until ctx ends.
	Tail(ctx context.Context, id string, n int, follow bool, w io.Writer) error
	// Stats returns the resource use of the running instance id.
	Stats(id string) (runtime.Stats, error)
}

var _ Runtime = (*runtime.Local)(nil)

// ErrBadRequest is returned (wrapped) for a request the agent cannot act on
// as sent.
var ErrBadRequest = errors.New("bad request")

// Agent serves the agent API over one runtime. It is an http.Handler, safe
// for concurrent use; Run must be running for exits to be reported.
type Agent struct {
	rt           Runtime
	artifacts    *release.Store
	source       ArtifactSource
	dataDir      string
	name         string
	advertise    string
	log          *slog.Logger
	pollWait     time.Duration
	fetchTimeout time.Duration

	fence   *fence
	exits   *exitRing
	fetches flight     // by digest
	starts  flight     // by instance id
	stopped stoppedIDs // a start of one is refused (stopped.go)
	mux     *http.ServeMux

	dockerMu sync.Mutex
	docker   *dockerrt.Engine // nil: no engine (noDocker says why); set once, by New or SetDocker
	noDocker string
	dockerUp chan struct{} // closed when docker is set
	loads    flight        // image loads, by digest
	imagesMu sync.Mutex
	images   map[string]string // artifact digest -> image ID, once known
}

// New checks cfg, reads the term file (a damaged one is an error: the fence
// is never reset silently), empties <DataDir>/tmp and returns the Agent. It
// starts no goroutine.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Runtime == nil:
		return nil, errors.New("new agent: Runtime is required")
	case cfg.Artifacts == nil:
		return nil, errors.New("new agent: Artifacts is required")
	case cfg.Source == nil:
		return nil, errors.New("new agent: Source is required")
	case cfg.DataDir == "":
		return nil, errors.New("new agent: DataDir is required")
	case net.ParseIP(cfg.Advertise) == nil:
		return nil, fmt.Errorf("new agent: advertise address %q is not an IP address", cfg.Advertise)
	}
	a := &Agent{
		rt: cfg.Runtime, artifacts: cfg.Artifacts, source: cfg.Source, dataDir: cfg.DataDir,
		name: cfg.Name, advertise: cfg.Advertise, log: cfg.Logger,
		pollWait: cfg.PollWait, fetchTimeout: cfg.FetchTimeout,
		docker: cfg.Docker, noDocker: cfg.NoDocker, dockerUp: make(chan struct{}), images: map[string]string{},
	}
	if a.noDocker == "" {
		a.noDocker = "the agent was started without one"
	}
	if a.docker != nil {
		close(a.dockerUp)
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("new agent: host name: %w", err)
		}
		a.name = h
	}
	if a.pollWait <= 0 {
		a.pollWait = DefaultPollWait
	}
	if a.fetchTimeout <= 0 {
		a.fetchTimeout = DefaultFetchTimeout
	}
	ring := cfg.ExitRing
	if ring <= 0 {
		ring = DefaultExitRing
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	if err := os.RemoveAll(a.tmpDir()); err != nil {
		return nil, fmt.Errorf("new agent: clear %s: %w", a.tmpDir(), err)
	}
	if err := os.MkdirAll(a.tmpDir(), 0o700); err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	f, err := openFence(filepath.Join(cfg.DataDir, "term"))
	if err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	a.fence = f
	var b [8]byte
	rand.Read(b[:])
	a.exits = newExitRing(hex.EncodeToString(b[:]), ring)
	a.mux = a.routes()
	return a, nil
}

// SetDocker gives an Agent made without a Docker engine (its engine did
// not answer yet) the engine e: from then on it runs container instances,
// reports their exits (while Run runs) and says so in GET /v1/host
// (api.HostInfo.Containers), which is how the server learns to place
// containers here again. The caller keeps e and closes it after Run, as
// with Config.Docker. An Agent that has an engine refuses another.
func (a *Agent) SetDocker(e *dockerrt.Engine) error {
	if e == nil {
		return errors.New("set docker engine: nil")
	}
	a.dockerMu.Lock()
	defer a.dockerMu.Unlock()
	if a.docker != nil {
		return errors.New("set docker engine: the agent has one")
	}
	a.docker = e
	close(a.dockerUp)
	a.log.Info("docker engine ready: container instances accepted", "containers", len(e.List()))
	return nil
}

// engine returns the Docker engine, or nil and why there is none.
func (a *Agent) engine() (*dockerrt.Engine, string) {
	a.dockerMu.Lock()
	defer a.dockerMu.Unlock()
	return a.docker, a.noDocker
}

func (a *Agent) tmpDir() string { return filepath.Join(a.dataDir, "tmp") }

// Epoch names this Agent's sequence of exits.
func (a *Agent) Epoch() string { return a.exits.epoch }

// Term returns the highest leader term recorded.
func (a *Agent) Term() uint64 { return a.fence.current() }

// Run records the runtime's exits (and the Docker engine's) until ctx ends
// or the runtime is closed (its Exits channel closed), and returns nil.
// Exits that end while Run is not running stay queued in the runtime until
// the next Run.
func (a *Agent) Run(ctx context.Context) error {
	exits := a.rt.Exits()
	var containerExits <-chan dockerrt.Exit
	var containerEnded <-chan string
	dockerUp := a.dockerUp
	for {
		var x api.InstanceExit
		select {
		case <-ctx.Done():
			return nil
		case <-dockerUp: // at once, or when SetDocker gives an engine
			dockerUp = nil
			e, _ := a.engine()
			containerExits, containerEnded = e.Exits(), e.Ended()
			continue
		case rx, ok := <-exits:
			if !ok {
				return nil
			}
			x = api.InstanceExit{ID: rx.ID, Code: rx.Code, Signal: rx.Signal, Stopped: rx.Stopped, At: rx.At, LogTail: rx.LogTail}
		case dx, ok := <-containerExits:
			if !ok {
				containerExits = nil
				continue
			}
			x = a.containerExit(dx)
		case id := <-containerEnded:
			// A hint for the server, before the engine's exit (api.InstanceExit.Ended).
			a.exits.push(api.InstanceExit{ID: id, Ended: true, At: time.Now()})
			continue
		}
		a.exits.push(x)
		a.log.Info("exit recorded", "instance", x.ID, "code", x.Code, "signal", x.Signal, "stopped", x.Stopped)
	}
}

// ServeHTTP serves the agent API to a caller with a verified client
// certificate; any other request gets 401.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		writeError(w, http.StatusUnauthorized, "the agent API needs a verified client certificate")
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *Agent) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.Handle("POST /v1/instances", a.mutating(a.handleStart))
	m.Handle("DELETE /v1/instances/{id}", a.mutating(a.handleStop))
	m.Handle("GET /v1/instances", a.serve(a.handleList))
	m.Handle("GET /v1/exits", a.serve(a.handleExits))
	m.Handle("GET /v1/instances/{id}/logs", a.serve(a.handleLogs))
	m.Handle("GET /v1/instances/{id}/stats", a.serve(a.handleStats))
	m.Handle("GET /v1/host", a.serve(a.handleHost))
	return m
}
