package lb

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// tlsNetHTTPTest is the name of the test that re-runs the TLS listeners'
// tests with Limits.DisableTLSFastPath set (start reads it from the
// test's name).
const tlsNetHTTPTest = "TestTLSNetHTTP"

// TestTLSNetHTTP runs the tests of what TLS listeners do (SNI, ALPN and
// HTTP/2, the smuggling guard, WebSockets, certificate rotation, the
// drain of fresh connections, limits on HTTP/2, client RTT in the access
// log and observer) a second time with their HTTP/1.1 connections served
// by net/http, as with tls_fast_path: false.
func TestTLSNetHTTP(t *testing.T) {
	for _, tc := range tlsListenerTests {
		t.Run(tc.name, tc.test)
	}
}

// tlsListenerTests are the tests of what TLS listeners do, re-run with
// other settings (TestTLSNetHTTP, TestTLSRecords).
var tlsListenerTests = []struct {
	name string
	test func(*testing.T)
}{
	{"HTTP2AndSNI", TestHTTP2AndSNI},
	{"TLSSmuggling", TestTLSSmuggling},
	{"WebSocketOverTLS", TestWebSocketOverTLS},
	{"CertificateReplacedOnDisk", TestCertificateReplacedOnDisk},
	{"DrainFinishesTLSHandshake", TestDrainFinishesTLSHandshake},
	{"HTTP2MalformedMethod", TestHTTP2MalformedMethod},
	{"HeaderLimitExactHTTP2", TestHeaderLimitExactHTTP2},
	{"ClientRTTRecorded", TestClientRTTRecorded},
	{"ManagedCertificates", TestManagedCertificates},
}

// tlsFastLB runs a balancer whose one TLS listener (for a.test) has the
// TLS fast path on (the default), and returns it with a client configuration that
// trusts it and offers http/1.1 only.
func tlsFastLB(t *testing.T, cfg Config) (*running, *tls.Config) {
	t.Helper()
	crt, cert := writeCert(t, t.TempDir(), "a.test")
	cfg.Listeners[0].TLS = []Certificate{crt}
	lb := start(t, cfg)
	fast := lb.listeners["web"].fast
	if fast == nil {
		t.Fatal("TLS listener without the fast path")
	}
	// Run starts the loops beside the TLS listener's accepts: a handshake
	// that ends before they do is served on the general path.
	select {
	case <-fast.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the TLS listener's loops did not start")
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return lb, &tls.Config{RootCAs: roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}}
}

// tlsConn is a client connection to a TLS listener, with a 10 s deadline.
type tlsConn struct {
	*tls.Conn
	br *bufio.Reader
}

func dialTLS(t *testing.T, addr string, tc *tls.Config) *tlsConn {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &tlsConn{Conn: conn, br: bufio.NewReader(conn)}
}

// ask writes req (nothing when empty) and reads one answer's body.
func (c *tlsConn) ask(t *testing.T, req string) string {
	t.Helper()
	if req != "" {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// h1Client is an HTTP/1.1-only client over TLS (no HTTP/2).
func h1Client(t *testing.T, tc *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: tc, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestTLSFastPathServes: HTTP/1.1 over TLS is served on the loops, on
// kept-alive connections, with the client's scheme passed on as https;
// bodies larger than a TLS record go both ways, and HTTP/2 is served
// on the loops too.
func TestTLSFastPathServes(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %d %s", r.Proto, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Forwarded"), len(body), r.URL.Path)
	})
	lb, tc := tlsFastLB(t, baseConfig(be.addr))
	c := h1Client(t, tc)
	fast := lb.listeners["web"].fast
	for i := range 20 {
		body := strings.Repeat("x", i*500)
		resp, err := c.Post("https://"+lb.addr+"/p"+strconv.Itoa(i), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: body: %v", i, err)
		}
		want := fmt.Sprintf("HTTP/1.1 https for=127.0.0.1;host=%q;proto=https %d /p%d", lb.addr, len(body), i)
		if string(got) != want {
			t.Fatalf("request %d: target saw %q, want %q", i, got, want)
		}
		if resp.TLS == nil || resp.ProtoMajor != 1 {
			t.Fatalf("request %d: %s, TLS %v", i, resp.Proto, resp.TLS != nil)
		}
	}
	if n := fast.requests.Load(); n != 20 {
		t.Errorf("fast path served %d requests, want 20", n)
	}
	for range 3 {
		resp, err := c.Get("https://" + lb.addr + "/big")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("big answer: %d bytes (want %d), %v", len(got), len(big), err)
		}
	}
	if n := fast.requests.Load(); n != 23 {
		t.Errorf("fast path served %d requests, want 23", n)
	}

	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tc.RootCAs, ServerName: "a.test"}, ForceAttemptHTTP2: true}
	t.Cleanup(h2.CloseIdleConnections)
	resp, err := (&http.Client{Transport: h2, Timeout: 10 * time.Second}).Get("https://" + lb.addr + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.HasPrefix(string(got), "HTTP/1.1 https") {
		t.Errorf("HTTP/2: %s, target saw %q", resp.Proto, got)
	}
	if n := fast.requests.Load(); n != 24 {
		t.Errorf("fast path served %d requests, want 24 (HTTP/2 on the loops too)", n)
	}
}

// TestTLSFastPathPipelined: many requests written at once, more than the
// connection's buffer holds, are all answered in order: what TLS decrypted
// beyond the buffer is read once there is room, with no readiness report
// from the socket.
func TestTLSFastPathPipelined(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	lb, tc := tlsFastLB(t, baseConfig(be.addr))
	conn := dialTLS(t, lb.addr, tc)
	const n = 400
	pad := strings.Repeat("p", 100)
	var reqs bytes.Buffer
	for i := range n {
		fmt.Fprintf(&reqs, "GET /%d HTTP/1.1\r\nHost: a.test\r\nX-Pad: %s\r\n\r\n", i, pad)
	}
	go conn.Write(reqs.Bytes()) // the answers flow back meanwhile
	for i := range n {
		if got := conn.ask(t, ""); got != "/"+strconv.Itoa(i) {
			t.Fatalf("answer %d: %q", i, got)
		}
	}
	if got := lb.listeners["web"].fast.requests.Load(); got != n {
		t.Errorf("fast path served %d, want %d", got, n)
	}
}

// TestTLSFastPathHandsOver: a request outside the subset (a chunked
// upload) moves the connection to net/http, which goes on serving it over
// the same TLS session, scheme and client certificate state included.
func TestTLSFastPathHandsOver(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.URL.Path, r.Header.Get("X-Forwarded-Proto"), body)
	})
	lb, tc := tlsFastLB(t, baseConfig(be.addr))
	conn := dialTLS(t, lb.addr, tc)
	for _, c := range []struct{ req, want string }{
		{"GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n", "/a https "},
		{"POST /b HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "/b https abc"},
		{"GET /c HTTP/1.1\r\nHost: a.test\r\n\r\n", "/c https "},
	} {
		if got := conn.ask(t, c.req); got != c.want {
			t.Fatalf("answer %q, want %q", got, c.want)
		}
	}
	if got := lb.listeners["web"].fast.requests.Load(); got != 1 {
		t.Errorf("fast path served %d, want 1 (then the hand-over)", got)
	}
}

// TestTLSFastPathClientCloses: a client that closes (with or without
// close_notify) frees its connection on the loop.
func TestTLSFastPathClientCloses(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	lb, tc := tlsFastLB(t, baseConfig(be.addr))
	fast := lb.listeners["web"].fast
	for i := range 10 {
		conn := dialTLS(t, lb.addr, tc)
		conn.ask(t, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if i%2 == 0 {
			conn.Close() // close_notify, then FIN
		} else {
			conn.NetConn().Close()
		}
	}
	waitFor(t, 5*time.Second, "connections closed on the loops", func() bool { return fast.conns.Load() == 0 })
	// A half-written record, then the close.
	raw, err := net.Dial("tcp", lb.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, tc)
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte{23, 3, 3, 0, 100, 1, 2, 3})
	raw.Close()
	waitFor(t, 5*time.Second, "connection closed on the loop", func() bool { return fast.conns.Load() == 0 })
}

// TestTLSFastPathSticky: the pin cookie a sticky pool sets on the loops
// over TLS is Secure, and pins the client.
func TestTLSFastPathSticky(t *testing.T) {
	mk := func(name string) *backend {
		return newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	a, b := mk("a"), mk("b")
	cfg := baseConfig(a.addr, b.addr)
	cfg.Pools[0].Sticky = pool.Sticky{Cookie: "shoal_pin", Secret: []byte("0123456789abcdef0123")}
	lb, tc := tlsFastLB(t, cfg)
	c := h1Client(t, tc)
	url := "https://" + lb.addr + "/"
	resp, first := get(t, c, url)
	var pin *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "shoal_pin" {
			pin = ck
		}
	}
	if pin == nil || !pin.Secure {
		t.Fatalf("pin cookie %v, want a Secure one (header %v)", pin, resp.Header)
	}
	for range 10 {
		if _, body := get(t, c, url, "Cookie", "shoal_pin="+pin.Value); body != first {
			t.Fatalf("pinned client moved from %s to %s", first, body)
		}
	}
	if n := lb.listeners["web"].fast.requests.Load(); n != 11 {
		t.Errorf("fast path served %d of 11", n)
	}
}

// TestTLSFastPathTimeouts: on the loops, a TLS client that stops in the
// middle of a head is closed after the header timeout, and an idle one
// after the idle timeout.
func TestTLSFastPathTimeouts(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := baseConfig(be.addr)
	// Long enough for a handshake, and for the request after it, on a
	// loaded machine (both run under these bounds too).
	cfg.Limits.HeaderTimeout = 500 * time.Millisecond
	cfg.Limits.ClientIdle = time.Second
	lb, tc := tlsFastLB(t, cfg)
	closed := func(conn *tls.Conn) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open after its timeout")
		}
	}
	slow := dialTLS(t, lb.addr, tc)
	io.WriteString(slow, "GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")
	closed(slow.Conn)

	idle := dialTLS(t, lb.addr, tc)
	idle.ask(t, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	if _, err := idle.br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: %v, want it closed", err)
	}
	if n := lb.listeners["web"].fast.requests.Load(); n != 1 {
		t.Errorf("fast path served %d, want 1", n)
	}
}

// TestTLSFastPathConnectionLimit: a connection on the loops keeps its
// MaxConns slot until it closes there.
func TestTLSFastPathConnectionLimit(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := baseConfig(be.addr)
	cfg.Limits.MaxConns = 1
	lb, tc := tlsFastLB(t, cfg)
	first := dialTLS(t, lb.addr, tc)
	first.ask(t, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	raw, err := net.Dial("tcp", lb.addr) // waits in the backlog
	if err != nil {
		t.Fatal(err)
	}
	second := tls.Client(raw, tc)
	second.SetDeadline(time.Now().Add(200 * time.Millisecond))
	err = second.Handshake()
	raw.Close() // spoiled by the deadline; its handshake fails at once when accepted
	if err == nil {
		t.Fatal("second connection's handshake done over the limit")
	}
	// A new connection gets in once the first is gone.
	first.Close()
	waitFor(t, 5*time.Second, "the slot freed", func() bool { return lb.listeners["web"].fast.conns.Load() == 0 })
	third := dialTLS(t, lb.addr, tc)
	if got := third.ask(t, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"); got != "ok" {
		t.Fatalf("connection after the first closed: %q", got)
	}
}

// TestTLSFastPathShutdown: a request in flight on the loops over TLS is
// answered during a graceful shutdown.
func TestTLSFastPathShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	lb, tc := tlsFastLB(t, baseConfig(be.addr))
	conn := dialTLS(t, lb.addr, tc)
	io.WriteString(conn, "GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n")
	<-started
	lb.cancel()
	waitFor(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.Dial("tcp", lb.addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if got := conn.ask(t, ""); got != "done" {
		t.Fatalf("in-flight request: %q", got)
	}
	lb.stop(t)
}

// TestTLSFastPathReload: a reload that moves the route to another pool
// applies to the next request of a kept-alive TLS connection on a loop.
func TestTLSFastPathReload(t *testing.T) {
	mk := func(name string) *backend {
		return newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	a, b := mk("a"), mk("b")
	cfg := baseConfig(a.addr)
	lb, tc := tlsFastLB(t, cfg)
	c := h1Client(t, tc)
	url := "https://" + lb.addr + "/"
	if _, body := get(t, c, url); body != "a" {
		t.Fatalf("before the reload: %q", body)
	}
	next := baseConfig(b.addr)
	next.Listeners = lb.cfg.Listeners
	if err := lb.Reload(next); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, c, url); body != "b" {
		t.Fatalf("after the reload: %q", body)
	}
	if n := lb.listeners["web"].fast.requests.Load(); n != 2 {
		t.Errorf("fast path served %d, want 2", n)
	}
}

// TestTLSFastPathAdoptedWhileDraining: a connection whose handshake ends
// on a loop that is already draining still gets its first request
// answered, then is closed.
func TestTLSFastPathAdoptedWhileDraining(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	lb, tc := tlsFastLB(t, baseConfig(be.addr))
	fast := lb.listeners["web"].fast
	<-lb.Serving()
	fast.mu.Lock()
	loops := fast.loops
	fast.mu.Unlock()
	for _, l := range loops {
		done := make(chan struct{})
		if !l.post(func() { l.stopping(); close(done) }) {
			t.Fatal("loop ended")
		}
		<-done
	}
	conn := dialTLS(t, lb.addr, tc)
	if got := conn.ask(t, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"); got != "ok" {
		t.Fatalf("answer %q", got)
	}
	if _, err := conn.br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the answer: %v, want the connection closed", err)
	}
}
