package lb

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// tlsTarget is an HTTPS target serving h with a certificate for
// "target.test" (its own CA, caFile), offering the alpn protocols
// (HTTP/2 served if they list "h2"). clientAuth makes it require a
// client certificate.
type tlsTarget struct {
	addr, caFile string
	srv          *httptest.Server
}

func newTLSTarget(t *testing.T, h http.Handler, alpn []string, clientAuth bool) *tlsTarget {
	t.Helper()
	cf, kf, _ := testenv.WriteSelfSigned(t, t.TempDir(), "target.test")
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: alpn}
	if clientAuth {
		s.TLS.ClientAuth = tls.RequireAnyClientCert
	}
	s.EnableHTTP2 = slices.Contains(alpn, "h2")
	s.StartTLS()
	t.Cleanup(s.Close)
	return &tlsTarget{addr: strings.TrimPrefix(s.URL, "https://"), caFile: cf, srv: s}
}

// tlsPool makes cfg's pool reach its targets over TLS verified with
// caFile for "target.test".
func tlsPool(cfg *Config, caFile string, proto Protocol) {
	cfg.Pools[0].TLS = &TargetTLS{CAFile: caFile, ServerName: "target.test"}
	cfg.Pools[0].Protocol = proto
}

// TestGRPCThroughH2TLSPool: a gRPC-shaped streaming call over HTTP/2
// through a TLS listener reaches a target that serves HTTP/2 over TLS
// only (Go's HTTP/2 server, ALPN h2), streams both ways and keeps its
// trailers both ways; the pool's health checks speak HTTP/2 over TLS
// (the target starts unhealthy), and an HTTP/1.1 client of a plain
// listener (the fast path hands the request over) gets there too. Both
// HTTP/2 servers of TLS listeners are checked: the loops' (whose
// fallback serves the stream) and x/net's.
func TestGRPCThroughH2TLSPool(t *testing.T) {
	t.Run("loops", func(t *testing.T) { grpcThroughH2TLSPool(t, false) })
	t.Run("x/net", func(t *testing.T) { grpcThroughH2TLSPool(t, true) })
}

func grpcThroughH2TLSPool(t *testing.T, xnet bool) {
	tg := newTLSTarget(t, grpcEchoHandler, []string{"h2"}, false)
	ca, cert := writeCert(t, t.TempDir(), "a.test")
	cfg := baseConfig()
	cfg.Listeners = append(cfg.Listeners, Listener{Name: "tls", Addr: "127.0.0.1:0", TLS: []Certificate{ca}})
	cfg.Pools[0].Targets = []pool.TargetSpec{{Addr: tg.addr, Unhealthy: true}}
	cfg.Pools[0].Health = &health.Spec{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	tlsPool(&cfg, tg.caFile, ProtocolH2)
	cfg.Limits.DisableH2FastPath = xnet
	lb := start(t, cfg)
	waitFor(t, 20*time.Second, "h2 TLS target healthy", func() bool {
		return lb.Status().Pools[0].Targets[0].State == "healthy"
	})
	grpcChat(t, h2Client(t, cert), "https://"+lb.Addr("tls").String())
	if resp, body := get(t, client(t), lb.url+"/healthz"); resp.StatusCode != 200 || body != "ok HTTP/2.0" {
		t.Fatalf("plain client: %d %q", resp.StatusCode, body)
	}
}

// TestTLSPoolHTTP1: an HTTP/1.1 pool over TLS presents its client
// certificate to a target that asks for one, speaks HTTP/1.1 there, and
// resumes its TLS session when it connects again (the target closes
// every connection after its answer).
func TestTLSPoolHTTP1(t *testing.T) {
	ccf, ckf, _ := testenv.WriteSelfSigned(t, t.TempDir(), "balancer.test")
	var resumed atomic.Int64
	tg := newTLSTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS.DidResume {
			resumed.Add(1)
		}
		w.Header().Set("Connection", "close")
		io.WriteString(w, r.Proto+" "+r.TLS.PeerCertificates[0].Subject.CommonName+" "+r.URL.Path)
	}), []string{"http/1.1"}, true)
	cfg := baseConfig(tg.addr)
	tlsPool(&cfg, tg.caFile, ProtocolHTTP1)
	cfg.Pools[0].TLS.CertFile, cfg.Pools[0].TLS.KeyFile = ccf, ckf
	lb := start(t, cfg)
	c := client(t)
	for i := range 3 {
		resp, body := get(t, c, lb.url+"/x")
		if resp.StatusCode != 200 || body != "HTTP/1.1 balancer.test /x" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := resumed.Load(); n < 1 {
		t.Errorf("no TLS session resumed in 3 connections to the target")
	}
}

// TestTLSPoolVerifiesAndReloadsCA: a target whose certificate the pool's
// ca_file does not sign is refused (502, counted as a handshake
// failure, logged); the same ca_file path rewritten with the right CA
// applies on Reload, a server_name the certificate does not list is
// refused too, and with the right one the loops serve the target.
func TestTLSPoolVerifiesAndReloadsCA(t *testing.T) {
	tg := newTLSTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure")
	}), []string{"http/1.1"}, false)
	otherCA, _, _ := testenv.WriteSelfSigned(t, t.TempDir(), "target.test")
	caFile := t.TempDir() + "/ca.pem"
	copyFile(t, otherCA, caFile)
	var logs syncBuffer
	cfg := baseConfig(tg.addr)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.Pools[0].Retries = -1
	tlsPool(&cfg, caFile, ProtocolHTTP1)
	lb := start(t, cfg)
	c := client(t)
	if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("unverified target: %d %q, want 502", resp.StatusCode, body)
	}
	if v := metricValue(t, lb.Balancer, `shoal_lb_target_tls_failures_total{pool="app",reason="handshake"}`); v != "1" {
		t.Errorf("handshake failures %q, want 1", v)
	}
	if l := logs.String(); !strings.Contains(l, "TLS connection to target failed") || !strings.Contains(l, "certificate") {
		t.Errorf("log does not name the failure:\n%s", l)
	}
	copyFile(t, tg.caFile, caFile)
	cfg.Pools[0].TLS = &TargetTLS{CAFile: caFile, ServerName: "other.test"} // the running config keeps the old one
	if err := lb.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("target without the server name: %d %q, want 502", resp.StatusCode, body)
	}
	if v := metricValue(t, lb.Balancer, `shoal_lb_target_tls_failures_total{pool="app",reason="handshake"}`); v != "2" {
		t.Errorf("handshake failures %q, want 2", v)
	}
	cfg.Pools[0].TLS = &TargetTLS{CAFile: caFile, ServerName: "target.test"}
	if err := lb.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != 200 || body != "secure" {
		t.Fatalf("after reload with the right CA: %d %q", resp.StatusCode, body)
	}
	if n := appUpstreams(lb.Balancer).tlsServed.Load(); n != 1 {
		t.Errorf("our record layer served %d target connections, want 1", n)
	}
}

// TestH2PoolRefusesTargetWithoutH2: an h2 pool refuses a TLS target that
// negotiates no HTTP/2 (no ALPN at all, and ALPN without h2): 502,
// counted as an alpn failure, and the log says why.
func TestH2PoolRefusesTargetWithoutH2(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "h1") })
	noALPN := newPlainTLSTarget(t, h)
	h1ALPN := newTLSTarget(t, h, []string{"http/1.1"}, false)
	for _, tc := range []struct {
		name string
		tg   *tlsTarget
	}{{"no ALPN", noALPN}, {"ALPN http/1.1", h1ALPN}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			cfg := baseConfig(tc.tg.addr)
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			cfg.Pools[0].Retries = -1
			tlsPool(&cfg, tc.tg.caFile, ProtocolH2)
			lb := start(t, cfg)
			if resp, body := get(t, client(t), lb.url+"/"); resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("%d %q, want 502", resp.StatusCode, body)
			}
			if v := metricValue(t, lb.Balancer, `shoal_lb_target_tls_failures_total{pool="app",reason="alpn"}`); v != "1" {
				t.Errorf("alpn failures %q, want 1", v)
			}
			if l := logs.String(); !strings.Contains(l, "reason=alpn") {
				t.Errorf("log does not name the ALPN refusal:\n%s", l)
			}
		})
	}
}

// newPlainTLSTarget is an HTTP/1.1 target over TLS that does no ALPN (as
// old servers): Go's server on a TLS listener with no NextProtos.
func newPlainTLSTarget(t *testing.T, h http.Handler) *tlsTarget {
	t.Helper()
	cf, kf, _ := testenv.WriteSelfSigned(t, t.TempDir(), "target.test")
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &tlsTarget{addr: ln.Addr().String(), caFile: cf}
}

// TestTLSPoolWebSocket: a WebSocket upgrade through a TLS pool reaches
// the target over TLS (HTTP/1.1 in ALPN, an h2 pool's too) and the
// tunnel carries bytes both ways.
func TestTLSPoolWebSocket(t *testing.T) {
	tg := newTLSTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want a TLS upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}), []string{"h2", "http/1.1"}, false)
	cfg := baseConfig(tg.addr)
	tlsPool(&cfg, tg.caFile, ProtocolH2)
	lb := start(t, cfg)
	conn, err := net.Dial("tcp", lb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	var got bytes.Buffer
	buf := make([]byte, 512)
	for !strings.Contains(got.String(), "\r\n\r\n") {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("head: %q %v", got.String(), err)
		}
		got.Write(buf[:n])
	}
	if !strings.HasPrefix(got.String(), "HTTP/1.1 101") {
		t.Fatalf("answer %q", got.String())
	}
	io.WriteString(conn, "hello\n")
	rest := strings.SplitN(got.String(), "\r\n\r\n", 2)[1]
	for !strings.Contains(rest, "\n") {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("echo: %q %v", rest, err)
		}
		rest += string(buf[:n])
	}
	if rest != "echo hello\n" {
		t.Fatalf("echo %q", rest)
	}
}

// copyFile writes the contents of from to to.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTLSPoolRetriesPastUnverifiedTarget: a target whose certificate
// does not verify fails like a refused connection: every request is
// retried on the verified target and succeeds, and the passive check
// ejects the failing one.
func TestTLSPoolRetriesPastUnverifiedTarget(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
	good := newTLSTarget(t, h, []string{"http/1.1"}, false)
	bad := newTLSTarget(t, h, []string{"http/1.1"}, false) // its own CA, not good's
	cfg := baseConfig(good.addr, bad.addr)
	cfg.Pools[0].Outlier = pool.Outlier{ConsecutiveFailures: 2}
	tlsPool(&cfg, good.caFile, ProtocolHTTP1)
	lb := start(t, cfg)
	c := client(t)
	for i := range 10 {
		if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != 200 || body != "good" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	waitFor(t, 20*time.Second, "the unverified target ejected", func() bool {
		for _, ts := range lb.Status().Pools[0].Targets {
			if ts.Addr == bad.addr {
				return ts.State == pool.StateEjected.String()
			}
		}
		return false
	})
}

// TestTLSPoolReloadSwitchesProbes: a reload that turns a pool's TLS on,
// then off again (with targets to match), moves its health checks along:
// each time the new target is found healthy, over TLS then without.
func TestTLSPoolReloadSwitchesProbes(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	plain := newBackend(t, h)
	secure := newTLSTarget(t, http.HandlerFunc(h), []string{"http/1.1"}, false)
	spec := &health.Spec{Path: "/", Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	cfg := baseConfig()
	cfg.Pools[0].Health = spec
	cfg.Pools[0].Targets = []pool.TargetSpec{{Addr: plain.addr, Unhealthy: true}}
	lb := start(t, cfg)
	healthy := func(addr string) bool {
		for _, ts := range lb.Status().Pools[0].Targets {
			if ts.Addr == addr {
				return ts.State == "healthy"
			}
		}
		return false
	}
	waitFor(t, 20*time.Second, "the plain target healthy", func() bool { return healthy(plain.addr) })
	for i, step := range []struct {
		addr string
		tls  bool
	}{{secure.addr, true}, {plain.addr, false}} {
		next := baseConfig()
		next.Pools[0].Health = spec
		next.Pools[0].Targets = []pool.TargetSpec{{Addr: step.addr, Unhealthy: true}}
		if step.tls {
			tlsPool(&next, secure.caFile, ProtocolHTTP1)
		}
		if err := lb.Reload(next); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("step %d: %s healthy (tls %v)", i, step.addr, step.tls), func() bool { return healthy(step.addr) })
	}
}

// TestTLSPoolReusesConnections: sequential requests to a TLS pool, over
// HTTP/1.1 and over HTTP/2, share one connection to the target.
func TestTLSPoolReusesConnections(t *testing.T) {
	for _, tc := range []struct {
		proto Protocol
		alpn  string
	}{{ProtocolHTTP1, "http/1.1"}, {ProtocolH2, "h2"}} {
		t.Run(tc.proto.String(), func(t *testing.T) {
			var mu sync.Mutex
			conns := map[string]bool{}
			tg := newTLSTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				conns[r.RemoteAddr] = true
				mu.Unlock()
				io.WriteString(w, r.Proto)
			}), []string{tc.alpn}, false)
			cfg := baseConfig(tg.addr)
			tlsPool(&cfg, tg.caFile, tc.proto)
			lb := start(t, cfg)
			c := client(t)
			for i := range 5 {
				if resp, body := get(t, c, lb.url+"/"); resp.StatusCode != 200 || !strings.HasPrefix(body, "HTTP/") {
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(conns) != 1 {
				t.Errorf("5 sequential requests used %d connections to the target, want 1", len(conns))
			}
		})
	}
}
