package lb

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2FastLB runs a balancer whose TLS listener serves HTTP/2 on the
// loops (the default), and returns it with an HTTP/2 client.
func h2FastLB(t *testing.T, cfg Config) (*running, *http.Client) {
	t.Helper()
	lb, tc := tlsFastLB(t, cfg)
	tc = tc.Clone()
	tc.NextProtos = []string{"h2"}
	tr := &http2.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return lb, &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// h2Get asks for url and returns the answer and its body.
func h2Get(t *testing.T, c *http.Client, method, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, b
}

// TestH2FastPathServes: many concurrent streams on one connection are
// served on the loops; bodies go both ways, larger than the windows;
// requests outside the fast subset are served by the handler on the same
// connection.
func TestH2FastPathServes(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		if r.URL.Path == "/chunked" {
			for range 100 {
				w.Write(big[:1000])
				w.(http.Flusher).Flush()
			}
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %d %x %s", r.Proto, r.Header.Get("X-Forwarded-Proto"), r.Method, len(b), crc(b), r.URL.RawPath+r.URL.Path)
	})
	lb, c := h2FastLB(t, baseConfig(be.addr))
	fast := lb.listeners["web"].fast
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("https://" + lb.addr + "/s" + strconv.Itoa(i))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("HTTP/1.1 https GET 0 %x /s%d", crc(nil), i); string(b) != want || resp.ProtoMajor != 2 {
				errs <- fmt.Errorf("stream %d: %s %q, want %q", i, resp.Proto, b, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := fast.requests.Load(); n != 200 {
		t.Errorf("fast path served %d requests, want 200", n)
	}
	for _, n := range []int{1, 5000, 8000, 100 << 10, 3 << 20} {
		body := bytes.Repeat([]byte{'b'}, n)
		_, got := h2Get(t, c, "POST", "https://"+lb.addr+"/post", bytes.NewReader(body))
		if want := fmt.Sprintf("HTTP/1.1 https POST %d %x /post", n, crc(body)); string(got) != want {
			t.Errorf("POST of %d bytes: target saw %q, want %q", n, got, want)
		}
	}
	for range 3 {
		_, got := h2Get(t, c, "GET", "https://"+lb.addr+"/big", nil)
		if !bytes.Equal(got, big) {
			t.Fatalf("big answer: %d bytes (want %d)", len(got), len(big))
		}
		_, got = h2Get(t, c, "GET", "https://"+lb.addr+"/chunked", nil)
		if len(got) != 100000 {
			t.Fatalf("chunked answer: %d bytes", len(got))
		}
	}
	// Outside the subset (a percent-encoded path): the handler serves it.
	before := fast.requests.Load()
	resp, got := h2Get(t, c, "GET", "https://"+lb.addr+"/a%20b", nil)
	if resp.StatusCode != 200 || !strings.HasSuffix(string(got), "/a b") {
		t.Errorf("fallback stream: %d %q", resp.StatusCode, got)
	}
	resp, got = h2Get(t, c, "HEAD", "https://"+lb.addr+"/s", nil)
	if resp.StatusCode != 200 || len(got) != 0 {
		t.Errorf("HEAD: %d, %d bytes", resp.StatusCode, len(got))
	}
	if n := fast.requests.Load(); n != before+1 {
		t.Errorf("fast path served %d requests, want %d", n, before+1)
	}
}

// crc is a short digest of b for the answers above.
func crc(b []byte) uint32 {
	var h uint32 = 2166136261
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

var _ = tls.VersionTLS13

// h2NetHTTPTest is the name of the test that re-runs the HTTP/2-over-TLS
// tests with Limits.DisableH2FastPath set (start reads it from the
// test's name).
const h2NetHTTPTest = "TestH2NetHTTP"

// TestH2NetHTTP runs the tests of what TLS listeners do over HTTP/2 (SNI
// and ALPN, the smuggling rules and h2spec's strict cases, WebSockets
// over HTTP/2, gRPC through h2c pools with trailers, limits, client RTT,
// certificate rotation, drain) a second time with HTTP/2 served by
// x/net's server, as with h2_fast_path: false.
func TestH2NetHTTP(t *testing.T) {
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"HTTP2AndSNI", TestHTTP2AndSNI},
		{"TLSSmuggling", TestTLSSmuggling},
		{"H2GuardStrict", TestH2GuardStrict},
		{"DedupeSettings", TestDedupeSettings},
		{"WebSocketOverHTTP2", TestWebSocketOverHTTP2},
		{"WebSocketOverHTTP2Idle", TestWebSocketOverHTTP2Idle},
		{"GRPCThroughH2CPool", TestGRPCThroughH2CPool},
		{"GRPCErrorsAsStatus", TestGRPCErrorsAsStatus},
		{"H2CPoolHealthAndPlainClients", TestH2CPoolHealthAndPlainClients},
		{"HTTP2MalformedMethod", TestHTTP2MalformedMethod},
		{"HeaderLimitExactHTTP2", TestHeaderLimitExactHTTP2},
		{"ClientRTTRecorded", TestClientRTTRecorded},
		{"CertificateReplacedOnDisk", TestCertificateReplacedOnDisk},
		{"DrainFinishesTLSHandshake", TestDrainFinishesTLSHandshake},
	} {
		t.Run(tc.name, tc.test)
	}
}
