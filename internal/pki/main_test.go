package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestMain fails the run if goroutines outlive the tests; internal/archtest
// checks that every package with tests has this.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is the tests' clock: it moves only when told (Set), and fires
// the channels of After whose deadline it passes.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Set moves the clock to t and fires every waiter due by then.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
			continue
		}
		kept = append(kept, w)
	}
	c.waiters = kept
}

func (c *fakeClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// waiting returns the deadlines of the pending waiters.
func (c *fakeClock) waiting() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, w := range c.waiters {
		out = append(out, w.at)
	}
	return out
}

// logBuffer collects a logger's lines; safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fleet is a server of the fleet on 127.0.0.1: its CA, token store (a real
// bbolt store), allow-list and the fleet listener with the join protocol
// and two guarded endpoints: /v1/whoami for any node, /v1/lb-only for
// balancer nodes. Both answer "<name> <role> <client serial>".
type fleet struct {
	clock  *fakeClock
	ca     *CA
	nodes  *MemNodes
	tokens *store.Tokens
	srv    *Server
	log    *logBuffer
	url    string
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	f := &fleet{clock: newClock(), nodes: &MemNodes{}, log: &logBuffer{}}
	var err error
	f.ca, err = LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"), WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "shoal.db"), store.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.tokens = st.Tokens()
	f.srv, err = NewServer(ServerConfig{CA: f.ca, Tokens: f.tokens, Nodes: f.nodes,
		Logger: slog.New(slog.NewTextHandler(f.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := NodeFrom(r.Context())
		if !ok {
			http.Error(w, "no identity", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, id.Name+" "+string(id.Role)+" "+r.TLS.PeerCertificates[0].SerialNumber.String())
	})
	mux := http.NewServeMux()
	mux.Handle("/v1/join", f.srv)
	mux.Handle("/v1/renew", f.srv)
	mux.Handle("/v1/lb-only", f.srv.RequireNode(api.RoleLB)(whoami))
	mux.Handle("/v1/whoami", f.srv.RequireNode()(whoami))
	cfg, err := ServerTLSConfig(f.ca, []string{"127.0.0.1", "fleet.test"})
	if err != nil {
		t.Fatal(err)
	}
	f.url = serve(t, mux, cfg)
	return f
}

// serve runs an HTTPS server with cfg on 127.0.0.1 until the test ends.
func serve(t *testing.T, h http.Handler, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String()
}

// token makes a join token of role on the fleet.
func (f *fleet) token(t *testing.T, role api.NodeRole) string {
	t.Helper()
	tok, _, err := f.srv.NewToken(role, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// join joins a node called name with a new token of role.
func (f *fleet) join(t *testing.T, name string, role api.NodeRole) (*Node, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node")
	n, err := Join(testenv.Context(t, time.Minute), f.url, f.token(t, role), name, dir, WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	return n, dir
}

// get calls path on the fleet with client and returns the status and body.
func (f *fleet) get(ctx context.Context, client *http.Client, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// nodeClient is an HTTP client presenting n's certificate, closed at the
// end of the test.
func nodeClient(t *testing.T, n *Node) *http.Client {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: n.ClientTLSConfig()}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}
