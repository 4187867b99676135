package agenttest

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agent"
	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// Options configures Start; zero fields take the agent's defaults.
type Options struct {
	// Dir holds the agent's data (agent/), artifacts (artifacts/) and the
	// runtime's (runtime/). Empty means a new t.TempDir(); give the same
	// Dir to a second Start to restart the agent over its files.
	Dir      string
	PollWait time.Duration
	ExitRing int
}

// Agent is a real agent served over HTTPS on 127.0.0.1 with mutual TLS.
type Agent struct {
	*agent.Agent
	Runtime *runtime.Local
	Store   *release.Store
	Dir     string
	// URL is https://127.0.0.1:<port>.
	URL string

	t       testing.TB
	ca      *CA
	addr    string
	tlsConf *tls.Config
	inner   sync.WaitGroup // handlers in flight
	srv     *http.Server
	served  chan struct{}
	cancel  context.CancelFunc
	runDone chan struct{}
	once    sync.Once
}

// Start runs an agent with artifacts from src; t.Cleanup stops it (Close).
func Start(t testing.TB, ca *CA, src *Artifacts, opts Options) *Agent {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	rt, err := runtime.NewLocal(runtime.Options{DataDir: filepath.Join(opts.Dir, "runtime")})
	if err != nil {
		t.Fatal(err)
	}
	store, err := release.Open(filepath.Join(opts.Dir, "artifacts"), nil)
	if err != nil {
		rt.Close(context.Background())
		t.Fatal(err)
	}
	fetchTr := &http.Transport{TLSClientConfig: ca.ClientTLS(t)}
	t.Cleanup(fetchTr.CloseIdleConnections)
	ag, err := agent.New(agent.Config{
		Runtime: rt, Artifacts: store, DataDir: filepath.Join(opts.Dir, "agent"),
		Source: &agent.HTTPSource{Base: src.URL, Client: &http.Client{Transport: fetchTr}},
		Name:   "test-host", Advertise: "127.0.0.1",
		PollWait: opts.PollWait, ExitRing: opts.ExitRing,
	})
	if err != nil {
		rt.Close(context.Background())
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{Agent: ag, Runtime: rt, Store: store, Dir: opts.Dir, t: t, ca: ca,
		tlsConf: ca.ServerTLS(t), cancel: cancel, runDone: make(chan struct{})}
	go func() {
		defer close(a.runDone)
		ag.Run(ctx)
	}()
	t.Cleanup(a.Close)
	a.listen("127.0.0.1:0")
	a.URL = "https://" + a.addr
	return a
}

func (a *Agent) listen(addr string) {
	a.t.Helper()
	ln, err := tls.Listen("tcp", addr, a.tlsConf)
	if err != nil {
		a.t.Fatalf("listen %s: %v", addr, err)
	}
	a.addr = ln.Addr().String()
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.inner.Add(1)
		defer a.inner.Done()
		a.Agent.ServeHTTP(w, r)
	})}
	a.served = make(chan struct{})
	srv, served := a.srv, a.served
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
}

// stopServing closes the listener and every connection, and waits for the
// handlers to return.
func (a *Agent) stopServing() {
	a.srv.Close()
	<-a.served
	a.inner.Wait()
}

// Restart closes the HTTP server (every connection, long polls included)
// and serves the same agent again on the same address; between, the agent
// goes on recording exits. between, when not nil, runs while nothing
// listens.
func (a *Agent) Restart(between func()) {
	a.t.Helper()
	a.stopServing()
	if between != nil {
		between()
	}
	a.listen(a.addr)
}

// Client returns a client of the agent with the server's certificate.
func (a *Agent) Client() *agentclient.Client {
	c := agentclient.New(a.URL, a.ca.ClientTLS(a.t))
	a.t.Cleanup(c.HTTP.CloseIdleConnections)
	return c
}

// Close stops serving, closes the runtime (its instances stopped) and ends
// the agent's Run. It may be called more than once.
func (a *Agent) Close() {
	a.once.Do(func() {
		a.stopServing()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Runtime.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
			a.t.Errorf("close runtime: %v", err)
		}
		a.cancel()
		<-a.runDone
	})
}
