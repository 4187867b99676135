package lb

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

func TestDurHistQuantile(t *testing.T) {
	var h durHist
	if q, n := h.quantile(0.5); q != 0 || n != 0 {
		t.Fatalf("empty: %v %d", q, n)
	}
	// 90 requests of 1.5 ms (bucket 1-2 ms), 10 of 40 ms (20-50 ms).
	for range 90 {
		h.observe(1500 * time.Microsecond)
	}
	for range 10 {
		h.observe(40 * time.Millisecond)
	}
	p50, n := h.quantile(0.5)
	if n != 100 || p50 <= time.Millisecond || p50 > 2*time.Millisecond {
		t.Errorf("p50 = %v of %d, want within (1ms, 2ms] of 100", p50, n)
	}
	if p95, _ := h.quantile(0.95); p95 <= 20*time.Millisecond || p95 > 50*time.Millisecond {
		t.Errorf("p95 = %v, want within (20ms, 50ms]", p95)
	}
	// Above the largest bound: the largest bound, not a made-up figure.
	var big durHist
	big.observe(time.Hour)
	if q, _ := big.quantile(0.5); q != timingBounds[len(timingBounds)-1] {
		t.Errorf("above the bounds: %v", q)
	}
	// Exactly on a bound belongs to that bucket.
	var edge durHist
	edge.observe(timingBounds[0])
	if edge.counts[0].Load() != 1 {
		t.Errorf("a duration equal to the first bound is not in the first bucket")
	}
}

// TestClientRTTRecorded: every way a request reaches the balancer (the
// fast path, the net/http path, a fast-path hand-over, HTTP/1.1 over TLS
// and HTTP/2) records its client connection's round-trip time in the
// observer's record, the access log, the route's and the listener's
// histograms and Status.
func TestClientRTTRecorded(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello")
	})
	dir := t.TempDir()
	cert, parsed := writeCert(t, dir, "a.test")
	roots := x509.NewCertPool()
	roots.AddCert(parsed)
	big := strings.Repeat("x", 20<<10) // past the fast path's buffer: handed over

	for _, tc := range []struct {
		name     string
		tls, h2  bool
		noFast   bool
		body     string
		wantFast bool // the fast path served the requests
	}{
		{name: "fast", wantFast: true},
		{name: "nethttp", noFast: true},
		{name: "handover", body: big},
		{name: "tls-h1", tls: true},
		{name: "h2", tls: true, h2: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recObserver{}
			logBuf := &syncBuffer{}
			cfg := baseConfig(be.addr)
			cfg.Observer, cfg.AccessLog = obs, logBuf
			cfg.Limits.DisableFastPath = tc.noFast
			scheme := "http"
			if tc.tls {
				cfg.Listeners[0].TLS = []Certificate{cert}
				scheme = "https"
			}
			lb := start(t, cfg)
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "a.test"}, ForceAttemptHTTP2: tc.h2}
			if !tc.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			t.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			const n = 5
			for range n {
				method, body := "GET", io.Reader(nil)
				if tc.body != "" {
					method, body = "POST", strings.NewReader(tc.body)
				}
				req, _ := http.NewRequest(method, scheme+"://"+lb.addr+"/x", body)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || (tc.h2 && resp.ProtoMajor != 2) {
					t.Fatalf("answer %s %s", resp.Proto, resp.Status)
				}
			}
			waitFor(t, 5*time.Second, "every request recorded", func() bool { return len(obs.all()) == n })
			wantFast := tc.wantFast || tc.name == "tls-h1" && !strings.HasPrefix(t.Name(), tlsNetHTTPTest+"/")
			// The loops serve HTTP/2 too, unless turned off.
			wantFast = wantFast || tc.h2 && !strings.HasPrefix(t.Name(), tlsNetHTTPTest+"/") && !strings.HasPrefix(t.Name(), h2NetHTTPTest+"/")
			if got := lb.listeners["web"].fast != nil && lb.listeners["web"].fast.requests.Load() == n; got != wantFast {
				t.Fatalf("served by the fast path: %v, want %v", got, wantFast)
			}
			for _, r := range obs.all() {
				// Loopback: known, above zero, far below a second.
				if r.RTT <= 0 || r.RTT > time.Second || r.RTTMin <= 0 || r.RTTMin > r.RTT+time.Millisecond {
					t.Errorf("record %s: RTT %v, min %v", r.RequestID, r.RTT, r.RTTMin)
				}
			}
			lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
			if len(lines) != n {
				t.Fatalf("access log has %d lines, want %d", len(lines), n)
			}
			for _, l := range lines {
				var e struct {
					RTT *float64 `json:"rtt_ms"`
				}
				if err := json.Unmarshal([]byte(l), &e); err != nil || e.RTT == nil || *e.RTT <= 0 {
					t.Errorf("access log line without a plausible rtt_ms: %s", l)
				}
			}
			st := lb.Status()
			for what, tm := range map[string]*api.RequestTiming{"route": st.Routes[0].Timing, "listener": st.Listeners[0].Timing} {
				if tm == nil || tm.Requests != n || tm.RTTSamples != n || tm.AppSamples != n || tm.RTTP50MS <= 0 || tm.RTTP95MS < tm.RTTP50MS || tm.AppP50MS <= 0 {
					t.Errorf("%s timing %+v", what, tm)
				}
			}
			rec := httptest.NewRecorder()
			lb.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			text := rec.Body.String()
			for _, series := range []string{`shoal_lb_client_rtt_seconds_count{route="all"}`, `shoal_lb_listener_client_rtt_seconds_count{listener="web"}`} {
				m := regexp.MustCompile(regexp.QuoteMeta(series) + ` (\d+)`).FindStringSubmatch(text)
				if m == nil {
					t.Errorf("metrics lack %s", series)
					continue
				}
				if k, _ := strconv.Atoi(m[1]); k != n {
					t.Errorf("%s = %d, want %d", series, k, n)
				}
			}
		})
	}
}
