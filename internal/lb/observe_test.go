package lb

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMetricsAndAccessLog(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
		}
		io.WriteString(w, "hello")
	})
	logBuf := &syncBuffer{}
	cfg := baseConfig(be.addr)
	cfg.AccessLog = logBuf
	lb := start(t, cfg)
	c := client(t)
	get(t, c, lb.url+"/ok?q=1", "X-Request-Id", "req-1")
	get(t, c, lb.url+"/fail")

	// The fast path records an exchange (metrics, access log, the
	// target's in-flight count) just after the response's last byte is
	// written, so the client can be a moment ahead: wait for the second.
	scrape := func() string {
		rec := httptest.NewRecorder()
		lb.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	waitFor(t, 5*time.Second, "both requests recorded", func() bool {
		return strings.Count(logBuf.String(), "\n") == 2 &&
			strings.Contains(scrape(), `shoal_lb_request_duration_seconds_count{route="all"} 2`) &&
			strings.Contains(scrape(), `shoal_lb_in_flight{pool="app"} 0`)
	})
	text := scrape()
	for _, want := range []string{
		`shoal_lb_requests_total{code="200",pool="app",route="all"} 1`,
		`shoal_lb_requests_total{code="500",pool="app",route="all"} 1`,
		`shoal_lb_request_duration_seconds_count{route="all"} 2`,
		`shoal_lb_upstream_ttfb_seconds_count{pool="app"} 2`,
		`shoal_lb_healthy_targets{pool="app"} 1`,
		`shoal_lb_fail_open{pool="app"} 0`,
		`shoal_lb_in_flight{pool="app"} 0`,
		`shoal_lb_ejections_total{pool="app"} 0`,
		`shoal_lb_retries_total{pool="app"} 0`,
		`shoal_lb_websockets_open{pool="app"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("access log has %d lines: %q", len(lines), logBuf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("line %q: %v", lines[0], err)
	}
	want := map[string]any{"request_id": "req-1", "method": "GET", "path": "/ok", "route": "all", "pool": "app",
		"target": be.addr, "status": float64(200), "bytes_out": float64(5), "retries": float64(0), "client": "127.0.0.1"}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("log %s = %v, want %v", k, first[k], v)
		}
	}
	for _, k := range []string{"time", "duration_ms", "upstream_ms", "host"} {
		if _, ok := first[k]; !ok {
			t.Errorf("log line lacks %s", k)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"plain", "q\"uote\\", "ctl\x00\x1f\x7f", "utf8 é ☃", "bad \xff utf8"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
	}
}
