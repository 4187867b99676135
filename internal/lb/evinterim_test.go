package lb

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// serveRequests accepts connections on ln until the test ends; on each
// it reads requests (their bodies drained) and lets serve answer them.
// A connection's end as the target saw it (its read after the last
// answer) goes to ended when there is room (nil: nowhere).
func serveRequests(t *testing.T, ln net.Listener, ended chan<- error, serve func(c net.Conn, r *http.Request)) {
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						select {
						case ended <- err:
						default:
						}
						return
					}
					io.Copy(io.Discard, r.Body)
					serve(c, r)
				}
			})
		}
	})
}

// newRawTarget is a plain HTTP/1.1 target written by hand: serve answers
// each request on the connection.
func newRawTarget(t *testing.T, serve func(w io.Writer, r *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveRequests(t, ln, nil, func(c net.Conn, r *http.Request) { serve(c, r) })
	return ln.Addr().String()
}

// TestLoopInterimAnswers: the fast path relays a target's 1xx answers to
// the client before the final one, as HAProxy does: a 103 Early Hints
// with its Link field reaches the client while the target still holds
// the 200, and a 100 and a 103 in the same read as their 200 come in
// order; the connection is then reused. Over a plain target and a TLS
// one (our record layer).
func TestLoopInterimAnswers(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		name := "plain"
		if overTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			final := make(chan struct{})
			serve := func(w io.Writer, r *http.Request) {
				switch r.URL.Path {
				case "/hints":
					io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
					select {
					case <-final:
					case <-time.After(60 * time.Second):
					}
					io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				default:
					io.WriteString(w, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nboth")
				}
			}
			var cfg Config
			if overTLS {
				tg := newRawTLSTarget(t, 0, func(tc *tls.Conn, r *http.Request) { serve(tc, r) })
				cfg = baseConfig(tg.addr)
				tlsPool(&cfg, tg.caFile, ProtocolHTTP1)
			} else {
				cfg = baseConfig(newRawTarget(t, serve))
			}
			lb := start(t, cfg)
			conn := dialLoop(t, lb.addr, 60*time.Second)
			br := bufio.NewReader(conn)
			read := func(want int, body string) *http.Response {
				t.Helper()
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("reading the %d answer: %v", want, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want || string(b) != body {
					t.Fatalf("answer %d %q, want %d %q", resp.StatusCode, b, want, body)
				}
				return resp
			}
			io.WriteString(conn, "GET /hints HTTP/1.1\r\nHost: a\r\n\r\n")
			if r := read(103, ""); r.Header.Get("Link") != "</s.css>; rel=preload" {
				t.Errorf("103's Link: %q", r.Header.Get("Link"))
			}
			close(final)
			if r := read(200, "ok"); r.Header.Get("X-Request-Id") == "" {
				t.Error("the final answer has no X-Request-Id")
			}
			io.WriteString(conn, "GET /both HTTP/1.1\r\nHost: a\r\n\r\n")
			read(100, "")
			if r := read(103, ""); r.Header.Get("Link") != "</a.js>; rel=preload" || r.Header.Get("X-Hop") != "" || r.Header.Get("Connection") != "" {
				t.Errorf("103's fields: %v", r.Header)
			}
			read(200, "both")
			if n := lb.listeners["web"].fast.requests.Load(); n != 2 {
				t.Errorf("the fast path served %d requests, want 2", n)
			}
		})
	}
}

// TestExpectContinueTLSTarget: a client that sends Expect: 100-continue
// gets 100 Continue before it sends its body, then the answer of a TLS
// target that read the body (the fast path hands such requests to
// net/http, which relays the 100).
func TestExpectContinueTLSTarget(t *testing.T) {
	tg := newTLSTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(b))
	}), []string{"http/1.1"}, false)
	cfg := baseConfig(tg.addr)
	tlsPool(&cfg, tg.caFile, ProtocolHTTP1)
	lb := start(t, cfg)
	conn := dialLoop(t, lb.addr, 60*time.Second)
	br := bufio.NewReader(conn)
	io.WriteString(conn, "POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("before the body: %v %v, want 100 Continue", resp, err)
	}
	io.WriteString(conn, "hello")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "got hello") {
		t.Fatalf("answer %d %q", resp.StatusCode, b)
	}
}
