package lb

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
)

// TestActiveHealthChecks: a target failing its health check leaves the
// rotation; when every target fails, the pool fails open and says so.
func TestActiveHealthChecks(t *testing.T) {
	var badHealth, goodHealth atomic.Int32
	goodHealth.Store(200)
	badHealth.Store(500)
	mk := func(name string, code *atomic.Int32) *backend {
		return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				w.WriteHeader(int(code.Load()))
				return
			}
			io.WriteString(w, name)
		})
	}
	good, bad := mk("good", &goodHealth), mk("bad", &badHealth)
	cfg := baseConfig(good.addr, bad.addr)
	cfg.Pools[0].Health = &health.Spec{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	lb := start(t, cfg)
	targetState := func(addr string) string {
		for _, ts := range lb.Status().Pools[0].Targets {
			if ts.Addr == addr {
				return ts.State
			}
		}
		return ""
	}
	waitFor(t, 10*time.Second, "bad target unhealthy", func() bool { return targetState(bad.addr) == "unhealthy" })
	c := client(t)
	for i := 0; i < 10; i++ {
		if _, body := get(t, c, lb.url+"/"); body != "good" {
			t.Fatalf("request went to %q", body)
		}
	}
	goodHealth.Store(503)
	waitFor(t, 10*time.Second, "fail open", func() bool { return lb.Status().Pools[0].FailOpen })
	if resp, _ := get(t, c, lb.url+"/"); resp.StatusCode != 200 {
		t.Fatalf("fail open: status %d", resp.StatusCode)
	}
	rec := httptest.NewRecorder()
	lb.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `shoal_lb_fail_open{pool="app"} 1`) {
		t.Error("metrics do not show fail open")
	}
	ts := lb.Status().Pools[0].Targets[0]
	if ts.Check != "unhealthy" || !strings.Contains(ts.Reason, "503") {
		t.Errorf("target status %+v", ts)
	}
	// A target added at run time is checked too.
	extra := mk("extra", &goodHealth)
	if err := lb.AddTarget("app", targets(extra.addr)[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "new target checked", func() bool { return targetState(extra.addr) == "unhealthy" })
}
