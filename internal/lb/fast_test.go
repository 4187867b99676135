package lb

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestFastPathFraming: responses with each kind of framing reach a raw
// client intact over one keep-alive connection, on the fast path, and a
// request outside the fast subset on the same connection is still served
// (by the net/http path).
func TestFastPathFraming(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(w, "part1-")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
		case "/close":
			// No length and no chunking: the body ends when the target
			// closes the connection.
			c, brw, _ := w.(http.Hijacker).Hijack()
			brw.WriteString("HTTP/1.1 200 OK\r\nX-Mode: close\r\n\r\nuntil-close")
			brw.Flush()
			c.Close()
		case "/post":
			b, _ := io.ReadAll(r.Body)
			io.WriteString(w, "got:"+string(b))
		default:
			io.WriteString(w, "fixed:"+r.Header.Get("X-Forwarded-For")+":"+r.Header.Get("X-Request-Id"))
		}
	})
	lb := start(t, baseConfig(be.addr))
	payload := "GET /fixed HTTP/1.1\r\nHost: a\r\nX-Request-Id: rid-1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n" +
		"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n" +
		"GET /close HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /post HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /fixed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	resps := raw(t, lb.addr, payload)
	br := readResponses(t, resps)
	if len(br) != 6 {
		t.Fatalf("got %d responses: %q", len(br), resps)
	}
	for _, want := range []string{"fixed:127.0.0.1:rid-1", "6\r\npart1-\r\n5\r\npart2\r\n0\r\n\r\n", "b\r\nuntil-close\r\n0\r\n\r\n", "got:hello", "got:abc"} {
		if !strings.Contains(resps, want) {
			t.Errorf("answers lack %q: %q", want, resps)
		}
	}
	if strings.Contains(resps, "6.6.6.6") {
		t.Errorf("untrusted X-Forwarded-For passed: %q", resps)
	}
	for i, r := range br {
		if r.StatusCode != 200 || r.Header.Get("X-Request-Id") == "" {
			t.Errorf("response %d: %d %v", i, r.StatusCode, r.Header)
		}
	}
	head := raw(t, lb.addr, "HEAD /fixed HTTP/1.1\r\nHost: a\r\n\r\nGET /fixed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if strings.Count(head, "HTTP/1.1 200 OK") != 2 || strings.Count(head, "fixed:") != 1 {
		t.Errorf("HEAD then GET: %q", head)
	}
	if n := lb.listeners["web"].fast.requests.Load(); n != 6 {
		t.Errorf("fast path served %d requests, want 6 (the chunked upload and after go to net/http)", n)
	}
}

// TestFastPathDisabled: with the switch off no listener has a fast path.
func TestFastPathDisabled(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := baseConfig(be.addr)
	cfg.Limits.DisableFastPath = true
	lb := start(t, cfg)
	if resp, body := get(t, client(t), lb.url+"/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if lb.listeners["web"].fast != nil {
		t.Fatal("fast path on although disabled")
	}
}

// TestFastPathBigResponseHead: a response head larger than the upstream
// read buffer (16 KiB) and with hundreds of fields is relayed whole, like on the net/http path, and
// the connection is reused afterwards.
func TestFastPathBigResponseHead(t *testing.T) {
	big := strings.Repeat("b", 40<<10)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("X-Big", big)
			for i := range 300 {
				w.Header().Set(fmt.Sprintf("X-F%d", i), "v")
			}
		}
		io.WriteString(w, "ok")
	})
	lb := start(t, baseConfig(be.addr))
	c := client(t)
	for _, p := range []string{"/big", "/small", "/big"} {
		resp, body := get(t, c, lb.url+p)
		if resp.StatusCode != 200 || body != "ok" || (p == "/big") != (resp.Header.Get("X-Big") == big) {
			t.Fatalf("%s: %d %q, X-Big of %d bytes", p, resp.StatusCode, body, len(resp.Header.Get("X-Big")))
		}
		if p == "/big" && resp.Header.Get("X-F299") != "v" {
			t.Fatalf("%s: %d fields relayed", p, len(resp.Header))
		}
	}
	if n := lb.listeners["web"].fast.requests.Load(); n != 3 {
		t.Errorf("fast path served %d requests, want 3", n)
	}
}
