package lb

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestListenOnHandedSocket: a second balancer built on the first one's
// socket (Sockets, then ListenOn) serves on the same address; once the
// first has stopped, every answer is the second's.
func TestListenOnHandedSocket(t *testing.T) {
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") })
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	first := start(t, baseConfig(a.addr))
	c := client(t)
	if _, body := get(t, c, first.url+"/"); body != "a" {
		t.Fatalf("first balancer: %q", body)
	}

	socks, err := first.Sockets()
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 1 || socks[0].Name != "web" || socks[0].Addr != "127.0.0.1:0" {
		t.Fatalf("Sockets: %+v", socks)
	}
	ln, err := net.FileListener(socks[0].File)
	socks[0].File.Close()
	if err != nil {
		t.Fatal(err)
	}
	second, err := New(baseConfig(b.addr))
	if err != nil {
		t.Fatal(err)
	}
	if err := second.ListenOn(map[string]*net.TCPListener{"web": ln.(*net.TCPListener)}); err != nil {
		t.Fatal(err)
	}
	if got := second.Addr("web").String(); got != first.addr {
		t.Fatalf("second balancer on %s, first on %s", got, first.addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second Run: %v", err)
		}
	}()
	select {
	case <-second.Serving():
	case <-time.After(10 * time.Second):
		t.Fatal("second balancer not serving")
	}
	first.stop(t)
	c.CloseIdleConnections()
	for range 20 {
		if _, body := get(t, c, first.url+"/"); body != "b" {
			t.Fatalf("after the first stopped: %q", body)
		}
	}
}

// TestListenOnUnknownListener: a socket for a listener the balancer does
// not have is an error, and the socket is closed.
func TestListenOnUnknownListener(t *testing.T) {
	b, err := New(baseConfig("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := b.ListenOn(map[string]*net.TCPListener{"other": ln.(*net.TCPListener)}); err == nil {
		t.Fatal("ListenOn accepted a socket for an unknown listener")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the socket is still open")
	}
	if _, err := b.Sockets(); err == nil {
		t.Fatal("Sockets of a balancer that is not listening")
	}
}

// TestDrainServesFreshConnection: a connection accepted on the fast path
// before a shutdown, whose first request comes after it began, is
// answered (then closed), not dropped.
func TestDrainServesFreshConnection(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	r := start(t, baseConfig(be.addr))
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fast := r.listeners["web"].fast
	waitFor(t, 10*time.Second, "the connection accepted", func() bool { return fast.conns.Load() == 1 })
	go r.stop(t)
	waitFor(t, 10*time.Second, "the drain begun", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.stopping
	})
	// Wait until every loop ran stopping() (read on the loop itself).
	fast.mu.Lock()
	loops := fast.loops
	fast.mu.Unlock()
	waitFor(t, 10*time.Second, "every loop draining", func() bool {
		for _, l := range loops {
			draining := make(chan bool, 1)
			if !l.post(func() { draining <- l.draining }) {
				t.Fatal("a loop ended during the drain")
			}
			if !<-draining {
				return false
			}
		}
		return true
	})
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("fresh connection during the drain: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("answer: %d %q", resp.StatusCode, body)
	}
}

// TestDrainFinishesTLSHandshake: a TLS connection accepted before a
// shutdown whose handshake is still running when it begins completes its
// handshake and gets its answer, not a reset.
func TestDrainFinishesTLSHandshake(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	dir := t.TempDir()
	crt, cert := writeCert(t, dir, "a.test")
	cfg := baseConfig(be.addr)
	cfg.Listeners[0].TLS = []Certificate{crt}
	r := start(t, cfg)
	raw, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tlsL := r.listeners["web"].tlsL
	waitFor(t, 10*time.Second, "the handshake started", func() bool { return tlsL.handshaking.Load() == 1 })
	go r.stop(t)
	waitFor(t, 10*time.Second, "accepting stopped", func() bool {
		select {
		case <-tlsL.acceptDone:
			return true
		default:
			return false
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	tc := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake during the drain: %v", err)
	}
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatalf("answer during the drain: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("answer: %d %q", resp.StatusCode, body)
	}
}
