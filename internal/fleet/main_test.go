package fleet_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/agent"
	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestMain doubles as the instances' program (agenttest.MaybeServe: an HTTP
// server on $HOST:$PORT) and fails the run when a goroutine outlives the
// tests.
func TestMain(m *testing.M) {
	agenttest.MaybeServe()
	goleak.VerifyTestMain(m)
}

// Timings of the tests' fleets: short, but with room for a loaded machine
// running -race (a heartbeat may take a few hundred milliseconds there).
const (
	heartbeatEvery = 100 * time.Millisecond
	lostAfter      = 1500 * time.Millisecond
)

// server is the server side of a test fleet on 127.0.0.1: the fleet CA in
// a temp dir, the join protocol, the fleet's hello and the artifacts on one
// mutual-TLS listener, and the Fleet itself, running.
type server struct {
	ca     *pki.CA
	pki    *pki.Server
	nodes  *pki.MemNodes
	store  *store.Store
	fleet  *fleet.Fleet
	stop   func() // ends fleet's Run
	url    string
	digest string
	tgz    []byte

	mu     sync.Mutex
	events []api.Event
	// artifacts, when set, serves the artifacts a controller built.
	artifacts *release.Store
	// fetches, when set, holds every artifact fetch until it is closed
	// (or the fetch's request ends).
	fetches chan struct{}
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{nodes: &pki.MemNodes{}}
	var err error
	if s.ca, err = pki.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca")); err != nil {
		t.Fatal(err)
	}
	if s.store, err = store.Open(filepath.Join(t.TempDir(), "shoal.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.store.Close() })
	if s.pki, err = pki.NewServer(pki.ServerConfig{CA: s.ca, Tokens: s.store.Tokens(), Nodes: s.nodes}); err != nil {
		t.Fatal(err)
	}
	s.digest, s.tgz = agenttest.Artifact(t, map[string]string{"version.txt": "v1\n"})
	s.fleet = s.newFleet(t)

	mux := http.NewServeMux()
	mux.Handle("POST /v1/join", s.pki)
	mux.Handle("POST /v1/renew", s.pki)
	mux.Handle("POST /v1/hello", s.fleet.Handler())
	mux.Handle("GET /v1/artifacts/{digest}", s.pki.RequireNode(api.RoleAgent)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		hold := s.fetches
		s.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		d := r.PathValue("digest")
		if d == s.digest {
			w.Write(s.tgz)
			return
		}
		s.mu.Lock()
		arts := s.artifacts
		s.mu.Unlock()
		if arts == nil || !arts.Has(d) {
			http.Error(w, "no such artifact", http.StatusNotFound)
			return
		}
		rc, err := arts.Reader(d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer rc.Close()
		io.Copy(w, rc)
	})))
	cfg, err := pki.ServerTLSConfig(s.ca, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	s.url = serveTLS(t, mux, cfg)
	s.stop = s.run(t, s.fleet)
	return s
}

// newFleet makes a Fleet over the server's store, CA and join server;
// each of with may change its options.
func (s *server) newFleet(t *testing.T, with ...func(*fleet.Options)) *fleet.Fleet {
	t.Helper()
	cert, err := s.ca.IssueServer([]string{"shoal-server"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.Certificate())
	o := fleet.Options{
		Store: s.store.Hosts(), PKI: s.pki,
		TLS:            &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, MinVersion: tls.VersionTLS13},
		HeartbeatEvery: heartbeatEvery, LostAfter: lostAfter,
		OnEvent: func(ev api.Event) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.events = append(s.events, ev)
		},
	}
	for _, w := range with {
		w(&o)
	}
	f, err := fleet.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// run runs f until the test ends or stop is called.
func (s *server) run(t *testing.T, f *fleet.Fleet) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("fleet run: %v", err)
			}
			if err := fleet.CheckSums(f); err != nil {
				t.Errorf("at the end of the fleet's run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventWith returns an error unless an event's reason contains every part.
func (s *server) eventWith(parts ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range s.events {
		ok := ev.Type == "host"
		for _, p := range parts {
			ok = ok && strings.Contains(ev.Reason, p)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("no host event with %q among %d events", parts, len(s.events))
}

// countEvents counts the events whose reason contains part.
func (s *server) countEvents(part string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ev := range s.events {
		if strings.Contains(ev.Reason, part) {
			n++
		}
	}
	return n
}

// serveTLS runs an HTTPS server with cfg on 127.0.0.1 until the test ends.
func serveTLS(t *testing.T, h http.Handler, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String()
}

// host is a real agent joined to the server's fleet: a runtime, an
// artifact store, the agent's handler on its own mutual-TLS listener.
type host struct {
	t      *testing.T
	name   string
	zone   string
	node   *pki.Node
	rt     *runtime.Local
	ag     *agent.Agent
	client *http.Client // the node's, toward the server
	addr   string
	srv    *http.Server
	served chan struct{}
	// starts counts the start calls (POST /v1/instances) that reached
	// the agent, beats its heartbeats (GET /v1/host).
	starts, beats atomic.Int64
	// handshakes, when set, holds the TLS handshake of every new
	// connection to the agent until it is closed: a host too loaded to
	// finish one in time.
	handshakes atomic.Pointer[chan struct{}]
	// silent, when set, holds every heartbeat's answer until it is
	// closed (or the heartbeat gives up): an agent that hangs.
	silent atomic.Pointer[chan struct{}]
	// dropStart, when set, drops the answer of the next start the agent
	// runs (the caller sees its connection closed); failStop answers the
	// next stop 500 without passing it to the agent.
	dropStart, failStop atomic.Bool
	cancel              context.CancelFunc
	runDone             chan struct{}
	closeRun            sync.Once
}

// join joins a host called name to s's fleet, serves its agent and says
// hello with capacity cpu and mem; the test's end closes it.
func (s *server) join(t *testing.T, name, zone string, cpu float64, mem int64) *host {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	tok, _, err := s.pki.NewToken(api.RoleAgent, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h := &host{t: t, name: name, zone: zone}
	if h.node, err = pki.Join(ctx, s.url, tok, name, filepath.Join(dir, "node")); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: h.node.ClientTLSConfig()}
	h.client = &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	if h.rt, err = runtime.NewLocal(runtime.Options{DataDir: filepath.Join(dir, "runtime")}); err != nil {
		t.Fatal(err)
	}
	arts, err := release.Open(filepath.Join(dir, "artifacts"), nil)
	if err != nil {
		h.rt.Close(ctx)
		t.Fatal(err)
	}
	h.ag, err = agent.New(agent.Config{Runtime: h.rt, Artifacts: arts, DataDir: filepath.Join(dir, "agent"),
		Source: &agent.HTTPSource{Base: s.url, Client: h.client}, Name: name, Advertise: "127.0.0.1"})
	if err != nil {
		h.rt.Close(ctx)
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	h.cancel, h.runDone = cancel, make(chan struct{})
	go func() {
		defer close(h.runDone)
		h.ag.Run(runCtx)
	}()
	t.Cleanup(h.close)
	h.listen("127.0.0.1:0")
	h.hello(t, s, api.AgentHello{URL: "https://" + h.addr, Zone: zone, CPU: cpu, MemoryBytes: mem, Epoch: h.ag.Epoch()})
	return h
}

// hello posts hi to the server as the host and fails the test unless it
// is answered 204.
func (h *host) hello(t *testing.T, s *server, hi api.AgentHello) {
	t.Helper()
	if status, body := post(t, h.client, s.url+"/v1/hello", hi); status != http.StatusNoContent {
		t.Fatalf("hello from %s: %d %s", h.name, status, body)
	}
}

// post sends v as JSON and returns the answer's status and body.
func post(t *testing.T, c *http.Client, url string, v any) (int, string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(testenv.Context(t, 30*time.Second), http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (h *host) listen(addr string) {
	h.t.Helper()
	cfg := h.node.ServerTLSConfig()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if hold := h.handshakes.Load(); hold != nil {
			<-*hold
		}
		return nil, nil
	}
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		h.t.Fatalf("listen %s: %v", addr, err)
	}
	h.addr = ln.Addr().String()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/instances" {
			h.starts.Add(1)
			if h.dropStart.CompareAndSwap(true, false) {
				h.ag.ServeHTTP(httptest.NewRecorder(), r)
				panic(http.ErrAbortHandler)
			}
		}
		if r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/instances/") && h.failStop.CompareAndSwap(true, false) {
			http.Error(w, "stop failed (the test's)", http.StatusInternalServerError)
			return
		}
		if r.Method == http.MethodGet && r.URL.Path == "/v1/host" {
			h.beats.Add(1)
			if hold := h.silent.Load(); hold != nil {
				select {
				case <-*hold:
				case <-r.Context().Done():
					return
				}
			}
		}
		h.ag.ServeHTTP(w, r)
	})
	h.srv = &http.Server{Handler: handler, ErrorLog: log.New(io.Discard, "", 0)}
	h.served = make(chan struct{})
	srv, served := h.srv, h.served
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
}

// unplug closes the agent's listener and every connection to it; the
// agent and its instances keep running, as on a host cut off the network.
func (h *host) unplug() {
	h.srv.Close()
	<-h.served
}

// plug serves the agent again on the same address.
func (h *host) plug() { h.listen(h.addr) }

// close stops serving and closes the runtime (its instances stopped).
func (h *host) close() {
	h.closeRun.Do(func() {
		h.srv.Close()
		<-h.served
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.rt.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
			h.t.Errorf("close runtime of %s: %v", h.name, err)
		}
		h.cancel()
		<-h.runDone
	})
}

// running returns the ids of the instances that run on the host, sorted.
func (h *host) running() []string {
	var ids []string
	for _, in := range h.rt.List() {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	return ids
}

// spec is a launch of the test program for app, declaring cpu and mem.
func (s *server) spec(t *testing.T, app, id string, cpu float64, mem int64) controller.LaunchSpec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return controller.LaunchSpec{ID: id, App: app, Release: 1, Digest: s.digest, Command: exe,
		Env: []string{agenttest.ServeEnv + "=1"}, StopTimeout: 5 * time.Second, CPU: cpu, Memory: mem}
}

// status returns the fleet's status of host name.
func status(f *fleet.Fleet, name string) api.HostStatus {
	for _, st := range f.Status() {
		if st.Name == name {
			return st
		}
	}
	return api.HostStatus{}
}

// waitState waits until every host named is in state st.
func waitState(t *testing.T, f *fleet.Fleet, st api.HostState, names ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, n := range names {
			if got := status(f, n); got.State != st {
				return fmt.Errorf("host %s is %s (%s), want %s", n, got.State, got.Reason, st)
			}
		}
		return nil
	})
	// What Status and placement read of each host's instances agrees
	// with the instances.
	if err := fleet.CheckSums(f); err != nil {
		t.Error(err)
	}
}

// nextExit waits for the next exit on ch.
func nextExit(t *testing.T, ctx context.Context, ch <-chan controller.Exit) controller.Exit {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-ctx.Done():
		t.Fatal("no exit came")
		return controller.Exit{}
	}
}

// get fetches url with c and returns the body, or an error.
func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// app is one app of a test fleet: its shoal.yaml in a temp folder and its
// artifact store, which the server serves to the agents.
type app struct {
	cfg  *config.App
	arts *release.Store
}

// newApp writes the app "web" (the test program declaring 0.5 CPU and 64
// MiB, desired instances, the health check's grace, group.max_replacing;
// group.max 6) and opens its artifact store.
func (s *server) newApp(t *testing.T, desired int, grace string, maxReplacing int) *app {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "version.txt"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`app: web
run:
  command: %s
  env:
    %s: "1"
  stop_timeout: 2s
  cpu: 0.5
  memory: 64MiB
health:
  path: /
  interval: 200ms
  timeout: 200ms
  unhealthy_threshold: 3
  grace: %s
group:
  min: 0
  max: 6
  desired: %d
  max_replacing: %d
balancer:
  listen: 127.0.0.1:0
  drain_timeout: 1s
admin:
  listen: 127.0.0.1:0
`, exe, agenttest.ServeEnv, grace, desired, maxReplacing)
	if err := os.WriteFile(filepath.Join(dir, "shoal.yaml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.artifacts = arts
	s.mu.Unlock()
	return &app{cfg: cfg, arts: arts}
}

// runController runs a's controller over f's Host with a fresh pool, as a
// server does at its start, until stop (or the test's end); stop returns
// Run's error.
func (s *server) runController(t *testing.T, a *app, f *fleet.Fleet, leaveRunning bool) (c *controller.Controller, stop func() error) {
	t.Helper()
	c, err := controller.New(controller.Options{Config: a.cfg, Store: s.store, Artifacts: a.arts,
		Host: f.Host("web"), Pool: pool.New(pool.Options{Name: "web", DrainTimeout: time.Second}),
		LeaveRunning: leaveRunning})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("controller run: %v", err)
		}
	})
	return c, stop
}

// waitInService waits until c has exactly n instances, all in service.
func waitInService(t *testing.T, c *controller.Controller, n int) api.Status {
	t.Helper()
	var st api.Status
	testenv.Eventually(t, 60*time.Second, func() error {
		st = c.Status()
		if st.InService != n || len(st.Instances) != n {
			return fmt.Errorf("%d in service of %d instances, want %d", st.InService, len(st.Instances), n)
		}
		return nil
	})
	return st
}
