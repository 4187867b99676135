package lb

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// finConn is a client's TCP connection that records whether a read
// returned the peer's FIN (io.EOF).
type finConn struct {
	net.Conn
	fin atomic.Bool
}

func (c *finConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		c.fin.Store(true)
	}
	return n, err
}

// notifyClient is a crypto/tls client that can tell a close_notify from a
// bare FIN: tls.Conn.Read returns io.EOF for both, but after the alert it
// returns without reading the socket again, so the FIN is not seen yet.
type notifyClient struct {
	*tlsConn
	raw *finConn
}

func dialNotify(t *testing.T, addr string, tc *tls.Config) *notifyClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw := &finConn{Conn: nc}
	conn := tls.Client(raw, tc)
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &notifyClient{tlsConn: &tlsConn{Conn: conn, br: bufio.NewReader(conn)}, raw: raw}
}

// wantCloseNotify reads until the connection ends and fails unless it
// ended with a close_notify alert, followed by the FIN.
func (c *notifyClient) wantCloseNotify(t *testing.T, when string) {
	t.Helper()
	_, err := c.br.ReadByte()
	if err != io.EOF {
		t.Fatalf("%s: read %v, want the connection ended (io.EOF)", when, err)
	}
	if c.raw.fin.Load() {
		t.Fatalf("%s: the balancer closed the connection without a close_notify alert", when)
	}
	var b [1]byte
	if n, err := c.raw.Read(b[:]); n != 0 || err != io.EOF {
		t.Fatalf("%s: after the close_notify: read %d bytes, %v; want the FIN", when, n, err)
	}
}

// TestTLSFastPathCloseNotify: every connection the loops close over TLS
// ends with a close_notify alert before the FIN, as crypto/tls's Close
// does: after an answer with Connection: close, after the idle timeout,
// at a drain, and in answer to the client's own close_notify.
func TestTLSFastPathCloseNotify(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := baseConfig(be.addr)
	cfg.Limits.ClientIdle = time.Second // the requests after each handshake come well before it
	lb, tc := tlsFastLB(t, cfg)
	fast := lb.listeners["web"].fast
	get := "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"

	c := dialNotify(t, lb.addr, tc)
	if body := c.ask(t, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"); body != "ok" {
		t.Fatalf("answer %q", body)
	}
	c.wantCloseNotify(t, "Connection: close")

	c = dialNotify(t, lb.addr, tc)
	c.ask(t, get)
	c.wantCloseNotify(t, "idle timeout")

	// The client says it is done: the balancer answers in kind and closes.
	c = dialNotify(t, lb.addr, tc)
	c.ask(t, get)
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.wantCloseNotify(t, "the client's close_notify")
	if n := fast.requests.Load(); n != 3 {
		t.Fatalf("fast path served %d of 3", n)
	}
	waitFor(t, 10*time.Second, "connections closed on the loops", func() bool { return fast.conns.Load() == 0 })
}

// TestTLSFastPathCloseNotifyDrain: a kept-alive TLS connection idle on a
// loop when the balancer shuts down gets a close_notify before the FIN.
func TestTLSFastPathCloseNotifyDrain(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	lb, tc := tlsFastLB(t, baseConfig(be.addr))
	c := dialNotify(t, lb.addr, tc)
	if body := c.ask(t, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"); body != "ok" {
		t.Fatalf("answer %q", body)
	}
	lb.cancel()
	c.wantCloseNotify(t, "drain")
	lb.stop(t)
}
