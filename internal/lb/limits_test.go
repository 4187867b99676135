package lb

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHeaderTooLarge431(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := baseConfig(be.addr)
	cfg.Limits.MaxHeaderBytes = 4096
	cfg.Limits.MaxURIBytes = 1024
	lb := start(t, cfg)
	out := raw(t, lb.addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("a", 16<<10)+"\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 431 ") {
		t.Fatalf("answer %.80q, want 431", out)
	}
}

func TestURITooLong414(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { t.Error("target reached") })
	lb := start(t, baseConfig(be.addr))
	resps := readResponses(t, raw(t, lb.addr, "GET /"+strings.Repeat("a", DefaultMaxURIBytes)+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
	if len(resps) != 1 || resps[0].StatusCode != 414 {
		t.Fatalf("want one 414, got %v", resps)
	}
}

func TestBodyTooLarge413(t *testing.T) {
	var reached int
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			reached++
		}
	})
	cfg := baseConfig(be.addr)
	cfg.Limits.MaxBodyBytes = 10
	lb := start(t, cfg)
	resps := readResponses(t, raw(t, lb.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("x", 100)))
	if len(resps) != 1 || resps[0].StatusCode != 413 {
		t.Fatalf("declared length: want 413, got %v", resps)
	}
	chunk := "64\r\n" + strings.Repeat("x", 100) + "\r\n0\r\n\r\n"
	resps = readResponses(t, raw(t, lb.addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk))
	if len(resps) != 1 || resps[0].StatusCode != 413 {
		t.Fatalf("chunked: want 413, got %v", resps)
	}
	resps = readResponses(t, raw(t, lb.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"))
	if len(resps) != 1 || resps[0].StatusCode != 200 {
		t.Fatalf("small body: want 200, got %v", resps)
	}
	if reached != 1 {
		t.Fatalf("target read %d complete bodies, want 1", reached)
	}
}

// TestHeaderTimeout: a client that sends half a header is disconnected.
func TestHeaderTimeout(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := baseConfig(be.addr)
	cfg.Limits.HeaderTimeout = 100 * time.Millisecond
	lb := start(t, cfg)
	c, err := net.Dial("tcp", lb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open after the header timeout")
	}
}

// TestConnectionLimit: over MaxConns, a new connection waits until one
// closes.
func TestConnectionLimit(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := baseConfig(be.addr)
	cfg.Limits.MaxConns = 1
	lb := start(t, cfg)
	a, err := net.Dial("tcp", lb.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(a, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	if n, err := a.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("first connection: %q %v", buf[:n], err)
	}
	bc, err := net.Dial("tcp", lb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	io.WriteString(bc, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	bc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := bc.Read(buf); err == nil {
		t.Fatalf("second connection served over the limit: %q", buf[:n])
	}
	a.Close()
	bc.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(bc)
	if !strings.HasPrefix(string(out), "HTTP/1.1 200") {
		t.Fatalf("second connection after the first closed: %q", out)
	}
}
