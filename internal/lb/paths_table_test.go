package lb

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// Tables of cases that run on both request paths, each case asserting the
// path that served it: a rule checked on one path only is how the fast
// path once lost Proxy-Authorization from its hop-by-hop list unnoticed
// (the test that covered it sent a custom Connection token, which hands
// the request over to net/http).

// servingPath names a request path of the balancer.
type servingPath string

const (
	fastPath    servingPath = "fast"    // the event loop (evclient.go)
	netHTTPPath servingPath = "nethttp" // net/http behind the guard (proxy.go)
)

// onBothPaths runs test once per path. On the net/http subtest the fast
// path is switched off; on the fast one it is on, and requests outside
// its subset are handed over to net/http.
func onBothPaths(t *testing.T, test func(t *testing.T, path servingPath, cfg func(Config) Config)) {
	for _, p := range []servingPath{fastPath, netHTTPPath} {
		t.Run(string(p), func(t *testing.T) {
			test(t, p, func(c Config) Config {
				c.Limits.DisableFastPath = p == netHTTPPath
				return c
			})
		})
	}
}

// assertServedBy checks that the fast path of listener "web" served
// exactly fast requests, and that none exists on the net/http path.
func assertServedBy(t *testing.T, lb *running, path servingPath, fast int64) {
	t.Helper()
	f := lb.listeners["web"].fast
	switch {
	case path == netHTTPPath && f != nil:
		t.Errorf("fast path on in the net/http case")
	case path == fastPath && f == nil:
		t.Errorf("no fast path in the fast case")
	case path == fastPath && f.requests.Load() != fast:
		t.Errorf("fast path served %d requests, want %d", f.requests.Load(), fast)
	}
}

// rawResponse sends one request (which should ask to close) on a new
// connection and parses the answer.
func rawResponse(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	out := raw(t, addr, req)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("read response: %v in %q", err, out)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestHopHeadersDroppedOnBothPaths: every hop-by-hop header (RFC 9110
// 7.6.1, and Proxy-Authorization/Proxy-Authenticate) and every header
// named in Connection is dropped in both directions, and forged client
// facts are replaced, on both paths, each case asserting which path
// served it.
func TestHopHeadersDroppedOnBothPaths(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields string // request fields after Host
		drop   []string
		// fast: the fast path serves it (else it hands it over).
		fast bool
	}{
		{"Proxy-Authorization", "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n", []string{"Proxy-Authorization"}, true},
		{"Proxy-Authenticate", "Proxy-Authenticate: Basic\r\n", []string{"Proxy-Authenticate"}, true},
		{"Proxy-Connection", "Proxy-Connection: keep-alive\r\n", []string{"Proxy-Connection"}, true},
		{"Keep-Alive", "Keep-Alive: timeout=5\r\n", []string{"Keep-Alive"}, true},
		{"Te", "Te: trailers\r\n", []string{"Te"}, true},
		{"Trailer", "Trailer: X-Sum\r\n", []string{"Trailer"}, true},
		{"Upgrade without Connection: upgrade", "Upgrade: h2c\r\n", []string{"Upgrade"}, false},
		{"all at once", "Proxy-Authorization: Basic eA==\r\nProxy-Connection: x\r\nKeep-Alive: 1\r\nTe: trailers\r\nTrailer: X-Sum\r\nProxy-Authenticate: x\r\n",
			[]string{"Proxy-Authorization", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Proxy-Authenticate"}, true},
		{"named in Connection (handed over)", "Connection: X-Drop-Me\r\nX-Drop-Me: 1\r\nProxy-Authorization: Basic eA==\r\n",
			[]string{"X-Drop-Me", "Proxy-Authorization"}, false},
		{"forged client facts", "X-Forwarded-For: 6.6.6.6\r\nX-Real-Ip: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n",
			nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
				be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Proxy-Authenticate", "Basic realm=x")
					echoHeaders(w, r)
				})
				lb := start(t, cfg(baseConfig(be.addr)))
				resp, body := rawResponse(t, lb.addr, "GET /h HTTP/1.1\r\nHost: app.example\r\n"+tc.fields+"Connection: close\r\n\r\n")
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				h := headerLines(body)
				for _, k := range tc.drop {
					if v, ok := h[k]; ok {
						t.Errorf("%s reached the target: %q", k, v)
					}
				}
				want := map[string]string{
					"X-Forwarded-For":   "127.0.0.1",
					"X-Real-Ip":         "127.0.0.1",
					"X-Forwarded-Proto": "http",
					"X-Forwarded-Host":  "app.example",
					"Forwarded":         "for=127.0.0.1;host=app.example;proto=http",
				}
				for k, v := range want {
					if got := h[k]; len(got) != 1 || got[0] != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
				for _, k := range []string{"Proxy-Authenticate", "X-Secret", "Keep-Alive"} {
					if v := resp.Header.Values(k); len(v) != 0 {
						t.Errorf("response hop-by-hop header %s reached the client: %q", k, v)
					}
				}
				fast := int64(0)
				if tc.fast {
					fast = 1
				}
				assertServedBy(t, lb, path, fast)
			})
		})
	}
}

// TestNonIdempotentNeverRetriedOnBothPaths: a request whose try was reset
// after it may have reached the target is sent again only when its method
// is idempotent and it has no body; a POST or PATCH never is, with a
// body or without one. Each case asserts which path served it.
func TestNonIdempotentNeverRetriedOnBothPaths(t *testing.T) {
	for _, tc := range []struct {
		name  string
		req   string
		tries int64 // attempts the targets see
	}{
		{"POST without body", "POST /order HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 1},
		{"POST with Content-Length: 0", "POST /order HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 1},
		{"POST with body", "POST /order HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbuy 1", 1},
		{"PATCH without body", "PATCH /order HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 1},
		{"PUT with body", "PUT /order HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbuy 1", 1},
		{"GET", "GET /order HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 2},
		{"DELETE without body", "DELETE /order HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
				var seen atomic.Int64
				c := cfg(baseConfig(resetBackend(t, &seen), resetBackend(t, &seen)))
				c.Pools[0].Retries = 1
				lb := start(t, c)
				resp, body := rawResponse(t, lb.addr, tc.req)
				if resp.StatusCode != 502 {
					t.Fatalf("status %d, want 502: %s", resp.StatusCode, body)
				}
				if n := seen.Load(); n != tc.tries {
					t.Errorf("targets saw the request %d times, want %d", n, tc.tries)
				}
				assertServedBy(t, lb, path, 1)
			})
		})
	}
}

// TestErrorAnswersOnBothPaths: the balancer's own answers carry the same
// status, body, headers and close rule on both paths.
func TestErrorAnswersOnBothPaths(t *testing.T) {
	onBothPaths(t, func(t *testing.T, path servingPath, cfg func(Config) Config) {
		lb := start(t, cfg(baseConfig(closedAddr(t))))
		// Two requests on one connection: a 502 keeps it open.
		out := raw(t, lb.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		rs := readResponses(t, out)
		if len(rs) != 2 {
			t.Fatalf("%d answers on one connection, want 2: %q", len(rs), out)
		}
		resp := rs[0]
		want := fmt.Sprintln(http.StatusText(http.StatusBadGateway))
		if resp.StatusCode != 502 || !strings.HasSuffix(out, "\r\n\r\n"+want) {
			t.Errorf("answer %d, want 502 with body %q: %q", resp.StatusCode, want, out)
		}
		for k, v := range map[string]string{
			"Content-Type": errorContentType, "X-Content-Type-Options": errorNoSniff,
			"Content-Length": fmt.Sprint(len(want)),
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id")
		}
		if resp.Close || !rs[1].Close {
			t.Errorf("close: first %v, second %v; want false, true", resp.Close, rs[1].Close)
		}
		assertServedBy(t, lb, path, 2)
	})
}
