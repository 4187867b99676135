// Package dockerrt runs instances as containers of a Docker engine, through
// the Engine API's Go client (github.com/docker/docker/client, negotiating
// the API version down to the engine's: Engine 20.10 / API 1.41 and newer),
// and builds and moves the images they run: built from a Dockerfile
// (Build), saved to a tar (Save) that the release store keeps as the
// artifact, loaded again on a host that lacks the image (EnsureImage).
//
// Every container it creates carries the labels LabelScope (the Engine's
// scope: which Shoal process owns it), LabelApp, LabelRelease and
// LabelInstance, and the caller's own labels (Spec.Labels). New removes the
// containers of its scope left over by an earlier run (one that was killed
// before it could stop them); a Detached Engine (`shoal agent`) adopts the
// running ones instead, removes the others, and leaves its containers
// running when it is closed, for the next run to adopt (adopt.go). No
// restart policy is set: Shoal supervises the instances and replaces those
// that end.
package dockerrt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
)

// Labels set on every container of an Engine.
const (
	LabelScope    = "dev.shoal.scope"
	LabelApp      = "dev.shoal.app"
	LabelRelease  = "dev.shoal.release"
	LabelInstance = "dev.shoal.instance"
)

// ErrNotFound is returned (wrapped) for an instance the Engine does not know.
var ErrNotFound = errors.New("no such instance")

// ErrNoEngine is returned (wrapped) by Connect when no Docker engine answers.
var ErrNoEngine = errors.New("no docker engine answers")

// keepExited is how many exited containers are kept (newest first) so that
// their logs can still be read; older ones are removed.
const keepExited = 16

// Options configure an Engine.
type Options struct {
	// Scope names the owner of the containers (LabelScope): `shoal up`
	// uses its data directory, so two of them on one engine never touch
	// each other's containers. Required.
	Scope string
	// BindIP is the address ports are published on; default 127.0.0.1.
	BindIP string
	// Logger receives the Engine's log lines; nil discards them.
	Logger *slog.Logger
	// Detached makes the containers outlive the Engine, as `shoal agent`'s
	// instances outlive the agent: New adopts the running containers of
	// the scope (and removes the scope's other ones: exited, or created by
	// a run killed before it could start them), and Close leaves the
	// running ones running.
	Detached bool
}

// Spec says what to run for one instance.
type Spec struct {
	ID      string
	App     string
	Release int
	// Image is the image ID ("sha256:<hex>") or reference to run.
	Image string
	// Cmd replaces the image's CMD when not empty.
	Cmd []string
	// Env is NAME=value; PORT is added.
	Env []string
	// ContainerPort is the port the app listens on inside the container,
	// published on a free port of BindIP (the container on the engine's
	// default bridge network). 0 runs the container on the host's network
	// instead, where the app listens on the free port itself (PORT).
	ContainerPort int
	StopSignal    syscall.Signal
	StopTimeout   time.Duration
	// CPU (cores) and Memory (bytes) become the container's limits; zero
	// sets none.
	CPU    float64
	Memory int64
	// Labels are the caller's own, kept on the container (LabelPrefix +
	// key) and reported back in Info, also by an Engine that adopts it.
	Labels map[string]string
	// Secrets are the values the caller redacts from the instance's
	// output. The names of the Env entries holding one are kept on the
	// container (LabelSecretEnv, names only), so that an Engine that adopts
	// it reports them again in Info.Secrets.
	Secrets []string
}

// Info describes a started (or adopted) container.
type Info struct {
	ID        string
	Container string // the engine's container ID
	Addr      string // BindIP:host port
	Port      int    // the host port of Addr
	PID       int    // the container's main process, as the host sees it
	StartedAt time.Time
	App       string
	Release   int
	Labels    map[string]string // Spec.Labels
	// Secrets are Spec.Secrets, or, for an adopted container, the values
	// of its env entries that held a secret when it was started.
	Secrets []string
}

// Exit reports the end of a container.
type Exit struct {
	ID string
	// Code is the exit status, or -1 when the process was killed by a
	// signal (an exit status over 128, as the engine reports it).
	Code    int
	Signal  string
	Stopped bool // the exit followed a Stop
	OOM     bool // the kernel killed it for its memory limit
	At      time.Time
}

// Stats is the resource use of a running container.
type Stats struct {
	CPUSeconds float64
	RSSBytes   int64
}

// Engine runs containers of one scope on a Docker engine. It is safe for
// concurrent use.
type Engine struct {
	cli      *client.Client
	scope    string
	bindIP   string
	log      *slog.Logger
	detached bool

	exits chan Exit
	ended chan string
	wg    sync.WaitGroup // one waiter per running container

	mu     sync.Mutex
	byID   map[string]*ctr
	exited []*ctr       // exited instances kept for their logs, oldest first
	ports  map[int]bool // host ports of containers not yet exited
	closed bool
	// detaching is set by the Close of a Detached Engine: the waiters it
	// cancels report no exit (the containers run on).
	detaching bool
}

type ctr struct {
	id, cid  string
	spec     Spec
	stopping bool
	// noStart marks a container whose start failed: it never ran, so its
	// end is no Exit.
	noStart bool
	port    int // the host port, handed out until the container exits
	// watch hands the waiter the process watch (watchProcess) once the
	// container runs; nil when it cannot be watched.
	watch chan (<-chan earlyExit)
	done  chan struct{} // closed when the container has exited
	exit  Exit
	info  Info
	// cancel ends the waiter's wait on the engine (Close of a Detached
	// Engine).
	cancel context.CancelFunc
}

// Connect returns a client of the engine named by the environment
// (DOCKER_HOST, default unix:///var/run/docker.sock) with the API version
// negotiated, after a ping; ErrNoEngine when none answers within timeout.
func Connect(ctx context.Context, timeout time.Duration) (*client.Client, error) {
	return ConnectTo(ctx, "", timeout)
}

// ConnectTo is Connect to the engine at host ("unix:///path/docker.sock",
// "tcp://10.0.0.5:2375"); "" is Connect's engine.
func ConnectTo(ctx context.Context, host string, timeout time.Duration) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("%w at %s: %v", ErrNoEngine, cli.DaemonHost(), err)
	}
	cli.NegotiateAPIVersion(pctx)
	return cli, nil
}

// New returns an Engine over cli (which it closes in Close) and removes
// the containers of opts.Scope left by an earlier run.
func New(ctx context.Context, cli *client.Client, opts Options) (*Engine, error) {
	if opts.Scope == "" {
		return nil, errors.New("dockerrt: empty scope")
	}
	if opts.BindIP == "" {
		opts.BindIP = "127.0.0.1"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cli: cli, scope: opts.Scope, bindIP: opts.BindIP, log: opts.Logger, detached: opts.Detached,
		exits: make(chan Exit, 64), ended: make(chan string, 64), byID: map[string]*ctr{}, ports: map[int]bool{}}
	if opts.Detached {
		if err := e.adoptScope(ctx); err != nil {
			return nil, err
		}
		return e, nil
	}
	if err := e.removeScope(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// removeScope force-removes every container of the scope.
func (e *Engine) removeScope(ctx context.Context) error {
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelScope+"="+e.scope))})
	if err != nil {
		return fmt.Errorf("list leftover containers: %w", err)
	}
	var errs []error
	for _, c := range list {
		if err := e.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, fmt.Errorf("remove leftover container %s: %w", short(c.ID), err))
			continue
		}
		e.log.Info("leftover container removed", "container", short(c.ID), "instance", c.Labels[LabelInstance], "state", c.State)
	}
	return errors.Join(errs...)
}

// Client returns the Engine's API client.
func (e *Engine) Client() *client.Client { return e.cli }

// Exits delivers one Exit per container that ends. It is closed by Close
// once every waiter has ended.
func (e *Engine) Exits() <-chan Exit { return e.exits }

// Ended delivers the ID of an instance whose process was seen to end
// (through a pidfd, when the engine runs in this PID namespace) before its
// Exit, which the engine may report only a few hundred milliseconds later,
// after it has torn the container down. It is a hint for a balancer (stop
// sending it requests now); an ID is dropped when nobody reads; the Exit
// always follows. Never closed.
func (e *Engine) Ended() <-chan string { return e.ended }

// Start creates and starts the container of spec and returns once it runs.
// On error nothing is left behind.
func (e *Engine) Start(ctx context.Context, spec Spec) (Info, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Info{}, errors.New("start: engine closed")
	}
	// An exited instance of the same ID (kept for its logs) may be started
	// again: a retried start of one that died meanwhile.
	if c, ok := e.byID[spec.ID]; ok && !isDone(c) {
		e.mu.Unlock()
		return Info{}, fmt.Errorf("start %s: instance exists", spec.ID)
	}
	e.mu.Unlock()
	hostPort, err := e.pickPort()
	if err != nil {
		return Info{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	keepPort := false
	defer func() {
		if !keepPort {
			e.releasePort(hostPort)
		}
	}()
	cport := spec.ContainerPort
	if cport == 0 {
		cport = hostPort
	}
	stopSecs := int(spec.StopTimeout.Round(time.Second) / time.Second)
	cfg := &container.Config{
		Image:       spec.Image,
		Env:         append(append([]string(nil), spec.Env...), "PORT="+strconv.Itoa(cport)),
		Labels:      containerLabels(e.scope, spec),
		StopSignal:  signalName(spec.StopSignal),
		StopTimeout: &stopSecs,
	}
	if len(spec.Cmd) > 0 {
		cfg.Cmd = spec.Cmd
	}
	hc := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Resources: container.Resources{
			Memory:   spec.Memory,
			NanoCPUs: int64(spec.CPU * 1e9),
		},
	}
	if spec.ContainerPort == 0 {
		// The host's network: the app binds the free port itself, as a
		// process would, and a container that dies refuses connections at
		// once (the balancer then retries another instance). A published
		// port goes through the engine's proxy, which keeps accepting
		// connections for a moment after the container is gone and closes
		// them unanswered (502s under load), and copies every byte once more.
		hc.NetworkMode = "host"
	} else {
		port := nat.Port(strconv.Itoa(cport) + "/tcp")
		cfg.ExposedPorts = nat.PortSet{port: {}}
		hc.PortBindings = nat.PortMap{port: {{HostIP: e.bindIP, HostPort: strconv.Itoa(hostPort)}}}
	}
	created, err := e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		return Info{}, fmt.Errorf("start %s: create container: %w", spec.ID, err)
	}
	c := &ctr{id: spec.ID, cid: created.ID, spec: spec, port: hostPort, done: make(chan struct{}), watch: make(chan (<-chan earlyExit), 1)}
	// Wait before starting, so that an exit right after the start is seen.
	wctx, wcancel := context.WithCancel(context.Background())
	c.cancel = wcancel
	waitC, errC := e.cli.ContainerWait(wctx, created.ID, container.WaitConditionNextExit)
	fail := func(err error) (Info, error) {
		wcancel()
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if rerr := e.cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); rerr != nil && !client.IsErrNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove container %s: %w", short(created.ID), rerr))
		}
		return Info{}, err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return fail(fmt.Errorf("start %s: engine closed", spec.ID))
	}
	if old, ok := e.byID[spec.ID]; ok && !isDone(old) {
		e.mu.Unlock()
		return fail(fmt.Errorf("start %s: instance exists", spec.ID))
	}
	e.byID[spec.ID] = c
	e.wg.Add(1)
	e.mu.Unlock()
	keepPort = true // the waiter releases it
	go e.wait(c, waitC, errC, wcancel)
	if err := e.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		// The waiter sees no exit of a container that never started:
		// remove the container, which ends the wait with an error.
		e.mu.Lock()
		c.noStart = true
		e.mu.Unlock()
		_, ferr := fail(fmt.Errorf("start %s: start container: %w", spec.ID, err))
		<-c.done
		e.mu.Lock()
		delete(e.byID, spec.ID)
		e.mu.Unlock()
		return Info{}, ferr
	}
	info := Info{ID: spec.ID, Container: created.ID, Addr: net.JoinHostPort(e.bindIP, strconv.Itoa(hostPort)), Port: hostPort,
		StartedAt: time.Now(), App: spec.App, Release: spec.Release, Labels: spec.Labels, Secrets: spec.Secrets}
	if in, err := e.cli.ContainerInspect(ctx, created.ID); err == nil && in.State != nil {
		info.PID = in.State.Pid
		c.watch <- watchProcess(in.State.Pid, created.ID, wctx.Done(), func() {
			select {
			case e.ended <- spec.ID:
			default: // Ended is a hint; the Exit that follows is the record
			}
		})
		if t, err := time.Parse(time.RFC3339Nano, in.State.StartedAt); err == nil {
			info.StartedAt = t
		}
	}
	e.mu.Lock()
	c.info = info
	e.mu.Unlock()
	e.log.Info("container started", "instance", spec.ID, "container", short(created.ID), "addr", info.Addr, "image", short(spec.Image))
	return info, nil
}

// wait reports c's exit once the engine says it ended.
func (e *Engine) wait(c *ctr, waitC <-chan container.WaitResponse, errC <-chan error, cancel context.CancelFunc) {
	defer e.wg.Done()
	defer cancel()
	ex := Exit{ID: c.id, Code: -1}
	var startFailed, early bool
	var watch <-chan earlyExit
	watchSet := c.watch
wait:
	for {
		select {
		case r := <-waitC:
			ex.Code = int(r.StatusCode)
		case err := <-errC:
			// The container was removed (or the engine went away) before it
			// exited: it does not run any more, or runs out of reach. Or a
			// Detached Engine is closing: it runs on, for the next run.
			startFailed = true
			e.mu.Lock()
			detaching := e.detaching
			e.mu.Unlock()
			if !detaching {
				e.log.Warn("container wait ended", "instance", c.id, "container", short(c.cid), "error", err)
			}
		case watch = <-watchSet:
			watchSet = nil
			continue
		case ee, ok := <-watch:
			if !ok {
				watch = nil
				continue
			}
			early = true
			ex.Code = ee.code
			if ee.signal != 0 {
				ex.Code = 128 + int(ee.signal)
			}
		}
		break wait
	}
	ex.At = time.Now()
	ictx, icancel := context.WithTimeout(context.Background(), 10*time.Second)
	if early {
		// Seen before the engine: its state still says running, and the
		// OOM flag is not known yet.
	} else if in, err := e.cli.ContainerInspect(ictx, c.cid); err == nil && in.State != nil {
		ex.OOM = in.State.OOMKilled
		if t, err := time.Parse(time.RFC3339Nano, in.State.FinishedAt); err == nil && t.Year() > 1 {
			ex.At = t
		}
	}
	icancel()
	if ex.Code > 128 && ex.Code < 128+65 {
		ex.Signal = signalName(syscall.Signal(ex.Code - 128))
		ex.Code = -1
	}
	e.mu.Lock()
	delete(e.ports, c.port)
	ex.Stopped = c.stopping
	startFailed = startFailed || c.noStart
	c.exit = ex
	close(c.done)
	var drop []string
	if !startFailed {
		e.exited = append(e.exited, c)
		if n := len(e.exited) - keepExited; n > 0 {
			for _, old := range e.exited[:n] {
				drop = append(drop, old.cid)
				if e.byID[old.id] == old {
					delete(e.byID, old.id)
				}
			}
			e.exited = append([]*ctr(nil), e.exited[n:]...)
		}
	}
	e.mu.Unlock()
	e.removeContainers(drop)
	if !startFailed {
		e.log.Info("container exited", "instance", c.id, "container", short(c.cid), "code", ex.Code, "signal", ex.Signal, "stopped", ex.Stopped, "oom", ex.OOM)
		e.exits <- ex
	}
}

func (e *Engine) removeContainers(ids []string) {
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			e.log.Warn("remove exited container", "container", short(id), "error", err)
		}
		cancel()
	}
}

func (e *Engine) lookup(id string) (*ctr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.byID[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return c, nil
}

// Stop sends the instance its stop signal, then SIGKILL after its stop
// timeout, and returns once the container has exited (or ctx ends). It
// returns an error wrapping ErrNotFound for an unknown instance; stopping
// an exited one returns nil.
func (e *Engine) Stop(ctx context.Context, id string) error {
	c, err := e.lookup(id)
	if err != nil {
		return err
	}
	select {
	case <-c.done:
		return nil
	default:
	}
	e.mu.Lock()
	c.stopping = true
	e.mu.Unlock()
	sig := signalName(c.spec.StopSignal)
	if err := e.cli.ContainerKill(ctx, c.cid, sig); err != nil && !notRunning(err) {
		return fmt.Errorf("stop %s: send %s: %w", id, sig, err)
	}
	t := time.NewTimer(c.spec.StopTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", id, ctx.Err())
	case <-t.C:
	}
	e.log.Info("container killed after its stop timeout", "instance", id, "container", short(c.cid), "stop_timeout", c.spec.StopTimeout)
	if err := e.cli.ContainerKill(ctx, c.cid, "SIGKILL"); err != nil && !notRunning(err) {
		return fmt.Errorf("stop %s: send SIGKILL: %w", id, err)
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", id, ctx.Err())
	}
}

// notRunning reports an error of a signal sent to a container that has
// already stopped (or is gone): its waiter reports the exit.
func notRunning(err error) bool {
	if client.IsErrNotFound(err) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "is not running") || strings.Contains(s, "No such container")
}

// Container returns the engine's container ID of the instance.
func (e *Engine) Container(id string) (string, error) {
	c, err := e.lookup(id)
	if err != nil {
		return "", err
	}
	return c.cid, nil
}

// Close stops every running container (stop signal, then SIGKILL after
// its stop timeout), removes the containers of the scope, waits for the
// waiters and closes Exits and the client. A Detached Engine instead
// leaves its running containers running (their exits are no longer
// watched: the next run adopts them) and removes only the exited ones it
// kept for their logs.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.detaching = e.detached
	var ids []string
	var cancels []context.CancelFunc
	var exited []string
	for id, c := range e.byID {
		ids = append(ids, id)
		if c.cancel != nil {
			cancels = append(cancels, c.cancel)
		}
	}
	for _, c := range e.exited {
		exited = append(exited, c.cid)
	}
	e.mu.Unlock()
	var errs []error
	if e.detached {
		for _, cancel := range cancels {
			cancel()
		}
		e.removeContainers(exited)
	} else {
		var wg sync.WaitGroup
		errs = make([]error, len(ids))
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = e.Stop(ctx, id)
			}()
		}
		wg.Wait()
		errs = append(errs, e.removeScope(ctx))
	}
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	go func() {
		for range e.exits { // nobody may read any more: drain
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("close: waiting for containers: %w", ctx.Err()))
	}
	<-done
	close(e.exits)
	errs = append(errs, e.cli.Close())
	return errors.Join(errs...)
}

// pickPort returns a free TCP port for an instance, not among those the
// Engine handed out to containers still running. It is taken below the
// kernel's ephemeral range (net.ipv4.ip_local_port_range), which outgoing
// connections draw from: a container binds its port seconds after it is
// chosen (the engine creates and starts it meanwhile), and a port of that
// range is often taken by then by some connection of a busy host. A port is
// free when a listener on all addresses (what the app or the engine's proxy
// binds) can be opened; it is released before the container binds it.
func (e *Engine) pickPort() (int, error) {
	lo, hi := portWindow()
	n := hi - lo + 1
	start := rand.IntN(n)
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range min(n, 2000) {
		port := lo + (start+i)%n
		if e.ports[port] {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln.Close()
		e.ports[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d", lo, hi)
}

// portWindow is the range pickPort draws from: the 16384 ports below the
// ephemeral range's start (10000-32767 with Linux's default 32768-60999),
// never below 10000.
func portWindow() (lo, hi int) {
	first := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 11000 {
				first = v
			}
		}
	}
	return max(10000, first-16384), first - 1
}

// releasePort forgets a port handed out by pickPort.
func (e *Engine) releasePort(port int) {
	e.mu.Lock()
	delete(e.ports, port)
	e.mu.Unlock()
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGHUP: "SIGHUP", syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGKILL: "SIGKILL", syscall.SIGABRT: "SIGABRT", syscall.SIGSEGV: "SIGSEGV",
	syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM",
}

// signalName names sig as the engine expects ("SIGTERM"); 0 is SIGTERM.
func signalName(sig syscall.Signal) string {
	if sig == 0 {
		return "SIGTERM"
	}
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return strconv.Itoa(int(sig))
}

// short cuts an ID or digest to 12 hex digits for messages.
func short(id string) string {
	_, h, ok := strings.Cut(id, ":")
	if !ok {
		h = id
	}
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
