package lb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// backend is an httptest server with its host:port.
type backend struct {
	*httptest.Server
	addr string
}

func newBackend(t testing.TB, h http.HandlerFunc) *backend {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return &backend{Server: s, addr: strings.TrimPrefix(s.URL, "http://")}
}

// baseConfig is one plain listener on an ephemeral port routing
// everything to pool "app" with the given targets.
func baseConfig(targets ...string) Config {
	pc := PoolConfig{Name: "app"}
	for _, a := range targets {
		pc.Targets = append(pc.Targets, pool.TargetSpec{Addr: a})
	}
	return Config{
		Listeners: []Listener{{Name: "web", Addr: "127.0.0.1:0"}},
		Routes:    []Route{{Name: "all", Pool: "app"}},
		Pools:     []PoolConfig{pc},
		Limits:    Limits{ShutdownTimeout: 5 * time.Second},
	}
}

// running is a balancer serving in the background of a test.
type running struct {
	*Balancer
	url    string
	addr   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// start builds, binds and runs a balancer; cleanup stops it and waits.
//
// Under TestNetHTTPPath (paths_test.go) the fast path is switched off, so
// the same test checks the net/http path; otherwise plain listeners must
// have it on.
func start(t testing.TB, cfg Config) *running {
	t.Helper()
	onNetHTTP := strings.HasPrefix(t.Name(), netHTTPPathTest+"/")
	if onNetHTTP {
		cfg.Limits.DisableFastPath = true
	}
	onTLSNetHTTP := strings.HasPrefix(t.Name(), tlsNetHTTPTest+"/")
	if onTLSNetHTTP {
		cfg.Limits.DisableTLSFastPath = true
	}
	if strings.HasPrefix(t.Name(), h2NetHTTPTest+"/") {
		cfg.Limits.DisableH2FastPath = true
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := b.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	for _, lc := range cfg.Listeners {
		l := b.listeners[lc.Name]
		if onNetHTTP && l.fast != nil {
			t.Fatalf("listener %s: fast path on under %s", lc.Name, t.Name())
		}
		if !onNetHTTP && !cfg.Limits.DisableFastPath && len(lc.TLS) == 0 && !lc.Managed && l.fast == nil {
			t.Fatalf("listener %s: plain listener without the fast path", lc.Name)
		}
		tlsOn := len(lc.TLS) > 0 || lc.Managed
		if tlsOn && (l.fast != nil) != (!onNetHTTP && !onTLSNetHTTP && !cfg.Limits.DisableFastPath && !cfg.Limits.DisableTLSFastPath) {
			t.Fatalf("listener %s: TLS listener's loops: %v under %s", lc.Name, l.fast != nil, t.Name())
		}
	}
	if strings.HasPrefix(t.Name(), tlsRecordsTest+"/") {
		// The tests re-run under TestTLSRecords must reach our record
		// layer, not only crypto/tls's.
		t.Cleanup(func() {
			var served int64
			watched := false
			for _, l := range b.listeners {
				if l.tlsL != nil && l.tlsL.secrets != nil {
					watched = true
					served += l.tlsL.secrets.served.Load()
				}
			}
			if watched && served == 0 {
				t.Errorf("no connection reached the TLS record layer")
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Balancer: b, cancel: cancel, done: make(chan error, 1)}
	r.addr = b.Addr(cfg.Listeners[0].Name).String()
	r.url = "http://" + r.addr
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it (idempotent).
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	r.once.Do(func() {
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Run did not return")
		}
	})
}

// client returns an HTTP client that does not share connections with
// other tests.
func client(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t testing.TB, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// raw sends payload on a new TCP connection and returns everything the
// balancer answers until it closes the connection (or 5s pass).
func raw(t testing.TB, addr, payload string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// readResponses parses every HTTP response in s.
func readResponses(t testing.TB, s string) []*http.Response {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(s))
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
}

// waitFor is testenv.Eventually for a condition that reports no error of
// its own: the failure names what was awaited.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, d, func() error {
		if !cond() {
			return errors.New("waiting for " + what)
		}
		return nil
	})
}
