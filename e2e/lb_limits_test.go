package e2e

import (
	"bufio"
	"net"
	"net/http"
	"strings"
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
