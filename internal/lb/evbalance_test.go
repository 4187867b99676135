package lb

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLoopsShareConnections: new connections spread over the event loops
// (the kernel wakes the same loop for most of them; the loops hand the
// surplus over), so that one core does not carry every connection.
func TestLoopsShareConnections(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := baseConfig(be.addr)
	cfg.Limits.Loops = 3
	lb := start(t, cfg)
	for i := range 60 {
		c, err := net.Dial("tcp", lb.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		buf := make([]byte, 512)
		if n, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
			t.Fatalf("connection %d: %q %v", i, buf[:n], err)
		}
	}
	f := lb.listeners["web"].fast
	f.mu.Lock()
	loops := f.loops
	f.mu.Unlock()
	if len(loops) != 3 {
		t.Fatalf("%d loops, want 3", len(loops))
	}
	lo, hi := 60, 0
	for _, l := range loops {
		got := make(chan int, 1)
		if !l.post(func() { got <- len(l.clients) }) {
			t.Fatal("loop ended")
		}
		n := <-got
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > 2 {
		t.Errorf("loops hold between %d and %d of 60 connections", lo, hi)
	}
}
