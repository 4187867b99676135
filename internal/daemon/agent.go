package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-dev/shoal/internal/agent"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/buildinfo"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// Hello backoff: the first retry after helloMinBackoff, doubling to
// helloMaxBackoff while the servers cannot be reached or refuse;
// electionRetry while they elect a leader (retryWait).
const (
	helloMinBackoff = time.Second
	helloMaxBackoff = time.Minute
)

// Agent is a running `shoal agent`: the host agent's API (package agent)
// over a detached runtime, served to the fleet server over mutual TLS with
// the node certificate this host got when it joined. Open it with
// OpenAgent, then call Run once (or Close).
//
// Under <data_dir> (0700):
//
//	pki/                    the node's key and certificates (package pki)
//	instances/, runtime/    instances' folders and records (package runtime, detached)
//	release/                fetched artifacts (package release)
//	term, releases/, tmp/   the agent API's own (package agent)
type Agent struct {
	cfg     *config.AgentFile
	log     *slog.Logger
	node    *pki.Node
	rt      *runtime.Local
	docker  *dockerrt.Engine // nil: no engine (agent.yaml's docker_host)
	api     *agent.Agent
	ln      net.Listener
	srv     *http.Server
	client  *http.Client // to the server: hello and artifacts
	servers *serverList  // agent.yaml's server URLs
	// noDocker is why the agent had no engine at open ("" when it had
	// one); Run keeps trying it unless docker_host is none.
	noDocker string
	started  atomic.Bool // set by the first of Run and Close
}

// OpenAgent prepares the data directory, binds the agent's listener (a port
// in use is an error here, before any token is spent), then loads the
// node's identity from <data_dir>/pki, or joins the fleet with the token
// in cfg.JoinTokenFile when no certificate is there (a refused join is a
// *pki.RefusedError and writes no certificate). It then starts the
// detached runtime and adopts the instances a previous run left, with one
// log line per adopted instance, and connects to agent.yaml's docker_host,
// adopting the containers the previous run left running (openEngine; no
// engine is a warning, not an error: container instances are refused).
// ctx bounds the join and the adoptions only. On error everything opened
// so far is released.
func OpenAgent(ctx context.Context, cfg *config.AgentFile, logger *slog.Logger) (_ *Agent, err error) {
	if cfg == nil {
		return nil, errors.New("daemon: OpenAgent needs the agent.yaml")
	}
	d := &Agent{cfg: cfg, log: logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if err := prepareDataDir(cfg.DataDir, d.log); err != nil {
		return nil, err
	}
	if d.servers, err = openServerList(cfg.Server, filepath.Join(cfg.DataDir, ServersFile)); err != nil {
		return nil, err
	}
	if d.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("agent listen: %w", err)
	}
	defer func() {
		if err != nil {
			d.ln.Close()
			if d.rt != nil {
				d.rt.Close(context.WithoutCancel(ctx))
			}
			if d.docker != nil {
				d.docker.Close(context.WithoutCancel(ctx))
			}
		}
	}()
	if d.node, err = d.identity(ctx); err != nil {
		return nil, err
	}
	d.client = fleetClient(d.node.ClientTLSConfig(), nil, d.servers, d.log)

	store, err := release.Open(filepath.Join(cfg.DataDir, "release"), d.log)
	if err != nil {
		return nil, fmt.Errorf("artifact store: %w", err)
	}
	d.rt, err = runtime.NewLocal(runtime.Options{
		DataDir: cfg.DataDir, Logger: d.log, Detached: true,
	})
	if err != nil {
		return nil, err
	}
	// The runtime logs each instance it adopts ("instance adopted").
	adopted, err := d.rt.Adopt(ctx)
	if err != nil {
		// What could not be adopted was cleaned and named; the rest runs.
		d.log.Warn("some instances of the previous run could not be adopted", "error", err)
	}
	d.noDocker = d.openEngine(ctx)
	d.api, err = agent.New(agent.Config{
		Docker:    d.docker,
		NoDocker:  d.noDocker,
		Runtime:   d.rt,
		Artifacts: store,
		Source:    &artifactSource{servers: d.servers, src: agent.HTTPSource{Client: d.client}},
		DataDir:   cfg.DataDir,
		Name:      cfg.Name,
		Advertise: cfg.Advertise,
		Logger:    d.log,
	})
	if err != nil {
		return nil, err
	}
	d.srv = &http.Server{
		Handler:           requireServer(d.log, d.api),
		TLSConfig:         d.node.ServerTLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	d.log.Info("listening", "listener", "agent", "addr", d.ln.Addr().String(), "node", d.node.Identity().Name,
		"server", d.servers.current(), "servers", len(cfg.Server), "instances", len(adopted))
	return d, nil
}

// identity loads the node kept in <data_dir>/pki, or joins the fleet when
// that directory holds no certificate yet.
func (d *Agent) identity(ctx context.Context) (*pki.Node, error) {
	return nodeIdentity(ctx, nodeJoin{
		Dir: filepath.Join(d.cfg.DataDir, "pki"), Servers: d.cfg.Server, Name: d.cfg.Name,
		TokenFile: d.cfg.JoinTokenFile, TokenKey: "join_token_file of " + d.cfg.File,
		How: "run `shoal setup`, or write a token from `shoal join-token` on the server into it",
	}, d.log)
}

// Addr returns the address the agent API listens on.
func (d *Agent) Addr() net.Addr { return d.ln.Addr() }

// Node returns the node's identity.
func (d *Agent) Node() *pki.Node { return d.node }

// Run serves the agent API until ctx ends or a part fails: the API over
// mutual TLS, the certificate Renewer (an expired certificate ends Run
// with an error wrapping pki.ErrCertificateExpired), the exit recorder,
// and the hello to the server, retried with backoff until the server
// takes it (the API serves meanwhile), and, when the Docker engine did
// not answer at open, its retries (awaitEngine). Then it stops serving (5 s of grace
// for calls in flight) and closes the runtime, which leaves every instance
// running under its shim for the next run to adopt. It returns after every
// goroutine has ended; nil after a stop through ctx.
func (d *Agent) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("shoal agent already ran or was closed")
	}
	g, gctx := errgroup.WithContext(ctx)
	serveUntilDone(gctx, g, d.srv, tls.NewListener(d.ln, d.srv.TLSConfig), "agent server", 5*time.Second)
	g.Go(func() error {
		r := &pki.Renewer{Node: d.node, ServerURLs: d.servers.all(), Logger: d.log}
		return r.Run(gctx)
	})
	g.Go(func() error { return d.api.Run(gctx) })
	if d.docker == nil && d.noDocker != noEngineConfigured {
		g.Go(func() error {
			d.awaitEngine(gctx, d.noDocker)
			return nil
		})
	}
	g.Go(func() error {
		d.hello(gctx)
		return nil
	})
	err := g.Wait()
	d.client.CloseIdleConnections()
	n := len(d.rt.List())
	if cerr := d.rt.Close(context.WithoutCancel(ctx)); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close runtime: %w", cerr))
	}
	if d.docker != nil {
		n += len(d.docker.List())
		if cerr := d.docker.Close(context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close docker engine: %w", cerr))
		}
	}
	d.log.Info("stopped; instances keep running under their shims for the next start to adopt", "instances", n)
	return err
}

// Close releases an Agent that was opened and is not run: its listener and
// its runtime (instances keep running). Close after Run does nothing.
func (d *Agent) Close() {
	if !d.started.CompareAndSwap(false, true) {
		return
	}
	d.ln.Close()
	d.client.CloseIdleConnections()
	d.rt.Close(context.Background())
	if d.docker != nil {
		d.docker.Close(context.Background())
	}
}

// engineTimeout bounds the agent's first ping of its Docker engine.
const engineTimeout = 10 * time.Second

// openEngine connects to the Docker engine of agent.yaml's docker_host and
// keeps it in d.docker, or returns why there is none (a warning: the
// agent runs processes, and Run tries the engine again: awaitEngine).
func (d *Agent) openEngine(ctx context.Context) string {
	if d.cfg.DockerHost == config.DockerHostNone {
		return noEngineConfigured
	}
	eng, why := d.connectEngine(ctx)
	if eng == nil {
		d.log.Warn("no docker engine: container instances refused until it answers", "error", why)
		return why
	}
	d.docker = eng
	return ""
}

// noEngineConfigured is why an agent whose docker_host is none runs no
// containers.
const noEngineConfigured = "agent.yaml's docker_host is none"

// connectEngine connects to docker_host's engine as a detached Engine of
// the agent's scope (adopting its containers), or returns why it cannot.
func (d *Agent) connectEngine(ctx context.Context) (*dockerrt.Engine, string) {
	cli, err := dockerrt.ConnectTo(ctx, d.cfg.DockerHost, engineTimeout)
	if err != nil {
		return nil, err.Error()
	}
	eng, err := dockerrt.New(ctx, cli, dockerrt.Options{Scope: d.cfg.DataDir, BindIP: d.cfg.Advertise,
		Logger: d.log.With("part", "docker"), Detached: true})
	if err != nil {
		cli.Close()
		return nil, "docker engine: " + err.Error()
	}
	d.log.Info("docker engine connected", "docker_host", cli.DaemonHost(), "api_version", cli.ClientVersion(), "containers", len(eng.List()))
	return eng, ""
}

// engineRetryMin and engineRetryMax bound the wait between two tries of
// an engine that did not answer (it doubles from one to the other).
const (
	engineRetryMin = time.Second
	engineRetryMax = 30 * time.Second
)

// awaitEngine tries docker_host's engine again, with a doubling backoff,
// until it answers or ctx ends; then the agent runs containers
// (agent.SetDocker) and says so to the server in its host info. A failure
// is logged only when its reason differs from the last one logged, so an
// engine that never comes costs a line, not one per try. why is the
// reason of the first try, logged already.
func (d *Agent) awaitEngine(ctx context.Context, why string) {
	wait := engineRetryMin
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		eng, now := d.connectEngine(ctx)
		if eng != nil {
			if err := d.api.SetDocker(eng); err != nil {
				eng.Close(context.WithoutCancel(ctx))
				d.log.Error("docker engine answered but the agent cannot use it", "error", err)
				return
			}
			d.docker = eng
			return
		}
		if ctx.Err() != nil {
			return
		}
		if now != why {
			d.log.Warn("docker engine still unusable; trying again with backoff", "error", now, "max_wait", engineRetryMax)
			why = now
		}
		wait = min(2*wait, engineRetryMax)
	}
}

// hello announces the agent to the server (POST /v1/hello) until the
// server takes it or ctx ends, trying each server in turn, then again
// after retryWait: a doubling backoff while every server is down or
// refuses, short steps while they elect a leader (a 503, or a follower's
// 307 to a leader that is gone).
func (d *Agent) hello(ctx context.Context) {
	_, port, _ := net.SplitHostPort(d.ln.Addr().String())
	h := api.AgentHello{
		URL:     "https://" + net.JoinHostPort(d.cfg.Advertise, port),
		Zone:    d.cfg.Zone,
		Region:  d.cfg.Region,
		CPU:     d.cfg.CPU,
		Epoch:   d.api.Epoch(),
		Version: buildinfo.Read().Version,
	}
	if h.CPU == 0 {
		h.CPU = float64(goruntime.NumCPU())
	}
	h.MemoryBytes = int64(d.cfg.Memory)
	if h.MemoryBytes == 0 {
		m, err := memTotal("/proc/meminfo")
		if err != nil {
			d.log.Warn("host memory unknown; announced as 0", "error", err)
		}
		h.MemoryBytes = m
	}
	var wait time.Duration
	var warned time.Time
	for attempt := 1; ; attempt++ {
		var took string
		err := d.servers.try(ctx, func(u string) error {
			took = u
			return d.postHello(ctx, u, h)
		})
		if err == nil {
			d.log.Info("hello accepted", "server", took, "url", h.URL, "epoch", h.Epoch)
			return
		}
		if ctx.Err() != nil {
			return
		}
		wait = retryWait(wait, helloMinBackoff, helloMaxBackoff, err)
		// Once a minute at most: while the servers elect, the agent
		// tries every 250 ms.
		level := slog.LevelDebug
		if time.Since(warned) >= time.Minute {
			level, warned = slog.LevelWarn, time.Now()
		}
		d.log.Log(ctx, level, "hello failed at every server; the agent serves meanwhile and tries again", "servers", len(d.cfg.Server),
			"attempt", attempt, "retry_in", wait.String(), "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (d *Agent) postHello(ctx context.Context, server string, h api.AgentHello) error {
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := server + "/v1/hello"
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return redirectFailed(server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil
	}
	return answerError(resp)
}

// requireServer lets a request through to next only when its verified
// client certificate (the TLS configuration requires and verifies one
// from the fleet CA) names a node of role server: 401 without one, 403
// for any other role, so an agent or a balancer node of the fleet cannot
// drive this host.
func requireServer(log *slog.Logger, next http.Handler) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pki.PeerIdentity(r)
		if errors.Is(err, pki.ErrNoClientCertificate) {
			writeErrorBody(w, http.StatusUnauthorized, "the agent API needs the fleet server's client certificate")
			return
		}
		if err == nil && id.Role != api.RoleServer {
			err = fmt.Errorf("role %s may not call the agent API, only %s", id.Role, api.RoleServer)
		}
		if err != nil {
			log.Warn("caller refused", "peer", r.RemoteAddr, "path", r.URL.Path, "error", err)
			writeErrorBody(w, http.StatusForbidden, "forbidden: "+err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeErrorBody(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: msg})
}

// memTotal reads MemTotal (kB) from a meminfo file, in bytes.
func memTotal(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("host memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 2 && f[1] == "kB" {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && kb >= 0 {
				return kb * 1024, nil
			}
		}
		break
	}
	return 0, fmt.Errorf("host memory: no MemTotal line in kB in %s", path)
}
