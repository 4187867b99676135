package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestLBLimitsAsDocumented sends raw requests to the `shoal lb` binary at
// the edges of its default limits (docs/lb-configuration.md): a request
// head of exactly max_header_bytes (64 KiB) passes and one byte more gets
// 431; a request line of exactly max_request_line (16 KiB, as AWS ALB)
// passes and one byte more gets 414; a method that is not a token gets
// 400.
func TestLBLimitsAsDocumented(t *testing.T) {
	ctx := testenv.Context(t, 60*time.Second)
	dir := t.TempDir()
	be := httpBackend(t, "a")
	p := startLB(t, ctx, dir, lbConfig(dir, []string{serverAddr(be)}, ""))
	addr := strings.TrimPrefix(p.web, "http://")

	head := func(size int) string { // a GET head of exactly size bytes
		pre, post := "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: ", "\r\n\r\n"
		return pre + strings.Repeat("p", size-len(pre)-len(post)) + post
	}
	line := func(size int) string { // a request line of exactly size bytes
		return "GET /" + strings.Repeat("p", size-len("GET / HTTP/1.1")) + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	}
	for _, tc := range []struct {
		name string
		req  string
		want int
	}{
		{"head of 64 KiB", head(64 << 10), 200},
		{"head of 64 KiB + 1", head(64<<10 + 1), 431},
		{"head of 69,578 bytes (within net/http's slack)", head(69578), 431},
		{"request line of 16 KiB", line(16 << 10), 200},
		{"request line of 16 KiB + 1", line(16<<10 + 1), 414},
		{"method with a space", "GE T / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 400},
	} {
		if got := rawStatus(t, addr, tc.req); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
}

// rawStatus writes req on a new connection to addr and returns the
// status of the answer.
func rawStatus(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatalf("write %d bytes: %v", len(req), err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read the answer to %d bytes: %v", len(req), err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestLBHTTP2LimitsAsDocumented sends raw HTTP/2 requests over TLS to the
// `shoal lb` binary: a :method that is not a token (a space, a control
// byte, parentheses) is refused with 400 or a stream reset and never
// reaches the target; a header list (RFC 9113 size: names, values and 32
// per field) of exactly max_header_bytes passes and one byte more gets
// 431, as for HTTP/1.1.
func TestLBHTTP2LimitsAsDocumented(t *testing.T) {
	ctx := testenv.Context(t, 60*time.Second)
	dir := t.TempDir()
	var reached []string
	var mu sync.Mutex
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.Method)
		mu.Unlock()
	}))
	t.Cleanup(be.Close)
	certFile, keyFile, leaf := testenv.WriteSelfSigned(t, dir, "a.test")
	src := lbConfig(dir, []string{serverAddr(be)}, "")
	tlsListener := fmt.Sprintf("listen: 127.0.0.1:0\n    tls:\n      - cert: %s\n        key: %s\n", certFile, keyFile)
	src = strings.Replace(src, "listen: 127.0.0.1:0\n", tlsListener, 1)
	p := startLB(t, ctx, dir, src)
	addr := strings.TrimPrefix(p.web, "http://")
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	tc := &tls.Config{RootCAs: roots, ServerName: "a.test"}

	pseudo := func(method string) [][2]string {
		return [][2]string{{":method", method}, {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"}}
	}
	for _, m := range []string{"GE T", "GET\x01", "(GET)"} {
		if st := testenv.DialH2(t, addr, tc).Request(pseudo(m)); st != 400 && st != 0 {
			t.Errorf(":method %q: status %d, want 400 or a reset", m, st)
		}
	}
	if st := testenv.DialH2(t, addr, tc).Request(pseudo("GET")); st != 200 {
		t.Errorf("a valid request: status %d, want 200", st)
	}
	const limit = 64 << 10 // max_header_bytes' default
	for _, size := range []int{limit, limit + 1} {
		fields := pseudo("GET")
		used := 0
		for _, f := range fields {
			used += len(f[0]) + len(f[1]) + 32
		}
		fields = append(fields, [2]string{"x-pad", strings.Repeat("p", size-used-len("x-pad")-32)})
		want := 200
		if size > limit {
			want = 431
		}
		if st := testenv.DialH2(t, addr, tc).Request(fields); st != want {
			t.Errorf("a header list of %d bytes: status %d, want %d", size, st, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range reached {
		if m != http.MethodGet {
			t.Errorf("the target was reached with :method %q", m)
		}
	}
}
