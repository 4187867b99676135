package lb

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestIdleConnectionsHoldNothing: a keep-alive connection idle on a loop,
// plain or TLS, holds no read buffer, no request state (evReq), no write
// buffer and, over TLS, no ciphertext buffer, even after an answer larger
// than those buffers: what an idle connection costs is its evClient (and
// its tls.Conn).
func TestIdleConnectionsHoldNothing(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	handler := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.WriteString(w, "ok")
	}
	ask := func(t *testing.T, c net.Conn, path string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d bytes, status %d, %v", path, n, resp.StatusCode, err)
		}
	}
	check := func(t *testing.T, lb *running, conns []net.Conn) {
		t.Helper()
		for i, c := range conns {
			path := "/"
			if i%2 == 1 {
				path = "/big"
			}
			ask(t, c, path)
		}
		f := lb.listeners["web"].fast
		f.mu.Lock()
		loops := f.loops
		f.mu.Unlock()
		// The loop finishes an exchange just after its last write, which
		// the client may read first.
		var held string
		waitFor(t, 10*time.Second, "idle connections holding nothing", func() bool {
			held = ""
			n := 0
			for _, l := range loops {
				got := make(chan string, 1)
				if !l.post(func() {
					s := ""
					for c := range l.clients {
						n++
						switch {
						case c.state != csIdle:
							s = "a connection not idle"
						case c.buf != nil || c.evReq != nil:
							s = "an idle connection with its read buffer or request state"
						case c.out != nil || c.wb != nil:
							s = "an idle connection with a write buffer"
						case c.tls != nil && c.tls.pipe.out != nil:
							s = "an idle TLS connection with its ciphertext buffer"
						}
					}
					got <- s
				}) {
					t.Fatal("loop ended")
				}
				if s := <-got; s != "" {
					held = s
				}
			}
			if n != len(conns) {
				held = "not every connection on the loops"
			}
			return held == ""
		})
	}
	const conns = 6
	t.Run("plain", func(t *testing.T) {
		be := newBackend(t, handler)
		lb := start(t, baseConfig(be.addr))
		var cs []net.Conn
		for range conns {
			c, err := net.Dial("tcp", lb.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			cs = append(cs, c)
		}
		check(t, lb, cs)
	})
	t.Run("tls", func(t *testing.T) {
		be := newBackend(t, handler)
		lb, tc := tlsFastLB(t, baseConfig(be.addr))
		var cs []net.Conn
		for range conns {
			c, err := tls.Dial("tcp", lb.addr, tc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			cs = append(cs, c)
		}
		check(t, lb, cs)
	})
}
