package lb

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// headOfSize is a GET head of exactly size bytes (request line, fields,
// final CRLF), padded with an X-Pad field.
func headOfSize(t *testing.T, size int) string {
	t.Helper()
	pre := "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: "
	post := "\r\n\r\n"
	n := size - len(pre) - len(post)
	if n < 1 {
		t.Fatalf("head of %d bytes is too small", size)
	}
	return pre + strings.Repeat("p", n) + post
}

// TestHeaderLimitExact: a head of max_header_bytes passes, one byte more
// gets 431, on whichever path carries it (the 16 KiB fast path buffer
// holds the 8 KiB heads; 64 KiB ones are handed to net/http).
func TestHeaderLimitExact(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, limit := range []int{8 << 10, DefaultMaxHeaderBytes} {
		cfg := baseConfig(be.addr)
		if limit != DefaultMaxHeaderBytes {
			cfg.Limits.MaxHeaderBytes = limit
		}
		lb := start(t, cfg)
		for _, size := range []int{limit - 1, limit, limit + 1} {
			want := 200
			if size > limit {
				want = 431
			}
			resps := readResponses(t, raw(t, lb.addr, headOfSize(t, size)))
			if len(resps) != 1 || resps[0].StatusCode != want {
				t.Errorf("limit %d, head of %d bytes: got %v, want one %d", limit, size, statuses(resps), want)
			}
		}
	}
}

// TestHeaderLimitPipelined: the head over the limit is answered 431 in
// its turn, after the requests before it on the same connection.
func TestHeaderLimitPipelined(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := baseConfig(be.addr)
	cfg.Limits.MaxHeaderBytes = 2048
	lb := start(t, cfg)
	ok := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	big := "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("p", 2049-len("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n")) + "\r\n\r\n"
	resps := readResponses(t, raw(t, lb.addr, ok+big+ok))
	if got := statuses(resps); fmt.Sprint(got) != "[200 431]" {
		t.Fatalf("statuses %v, want [200 431]", got)
	}
}

// TestRequestLineLimit: request lines up to 16 KiB pass by default (an
// 8 KiB one used to get 414); one byte more gets 414.
func TestRequestLineLimit(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	lb := start(t, baseConfig(be.addr))
	line := func(n int) string { // "GET /ppp HTTP/1.1" of n bytes
		return "GET /" + strings.Repeat("p", n-len("GET / HTTP/1.1")) + " HTTP/1.1"
	}
	for _, tc := range []struct{ n, want int }{{8 << 10, 200}, {8<<10 + 100, 200}, {DefaultMaxRequestLine, 200}, {DefaultMaxRequestLine + 1, 414}} {
		resps := readResponses(t, raw(t, lb.addr, line(tc.n)+"\r\nHost: a\r\nConnection: close\r\n\r\n"))
		if len(resps) != 1 || resps[0].StatusCode != tc.want {
			t.Errorf("request line of %d bytes: got %v, want one %d", tc.n, statuses(resps), tc.want)
		}
	}
}

func statuses(resps []*http.Response) []int {
	var out []int
	for _, r := range resps {
		out = append(out, r.StatusCode)
	}
	return out
}

// tlsLB runs a balancer with one TLS listener for a.test.
func tlsLB(t *testing.T, cfg Config) (*running, *x509.CertPool) {
	t.Helper()
	c, leaf := writeCert(t, t.TempDir(), "a.test")
	cfg.Listeners[0].TLS = []Certificate{c}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return start(t, cfg), roots
}

// TestHTTP2MalformedMethod: a :method that is not a token is refused as
// malformed (it used to reach the proxy step and get 502).
func TestHTTP2MalformedMethod(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if !h1.ValidMethod(r.Method) {
			t.Errorf("target reached with method %q", r.Method)
		}
	})
	lb, roots := tlsLB(t, baseConfig(be.addr))
	for _, m := range []string{"GE T", "GET\x01", "(GET)"} {
		st := testenv.DialH2(t, lb.addr, &tls.Config{RootCAs: roots, ServerName: "a.test"}).Request([][2]string{{":method", m}, {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"}})
		if st != 400 && st != 0 {
			t.Errorf(":method %q: status %d, want 400 or a reset", m, st)
		}
	}
	if st := testenv.DialH2(t, lb.addr, &tls.Config{RootCAs: roots, ServerName: "a.test"}).Request([][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"}}); st != 200 {
		t.Errorf("valid request: status %d, want 200", st)
	}
}

// TestHeaderLimitExactHTTP2: an HTTP/2 header list (RFC 9113 size: names,
// values and 32 per field) of max_header_bytes passes, one more gets 431.
func TestHeaderLimitExactHTTP2(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, limit := range []int{8 << 10, DefaultMaxHeaderBytes} {
		cfg := baseConfig(be.addr)
		cfg.Limits.MaxHeaderBytes = limit
		lb, roots := tlsLB(t, cfg)
		for _, size := range []int{limit - 1, limit, limit + 1} {
			fields := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"}}
			used := 0
			for _, f := range fields {
				used += len(f[0]) + len(f[1]) + 32
			}
			fields = append(fields, [2]string{"x-pad", strings.Repeat("p", size-used-len("x-pad")-32)})
			want := 200
			if size > limit {
				want = 431
			}
			if st := testenv.DialH2(t, lb.addr, &tls.Config{RootCAs: roots, ServerName: "a.test"}).Request(fields); st != want {
				t.Errorf("limit %d, header list of %d bytes: status %d, want %d", limit, size, st, want)
			}
		}
	}
}
