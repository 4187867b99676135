package lb

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/pool"
)

// TestHealthCheckEndsEjection: a target ejected by passive outlier
// detection comes back as soon as its active health check passes, not
// after its full ejection time (here 10 minutes).
func TestHealthCheckEndsEjection(t *testing.T) {
	mk := func(name string, failing bool) *backend {
		return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/fail" && failing {
				w.WriteHeader(500)
			}
			io.WriteString(w, name)
		})
	}
	a, b := mk("a", true), mk("b", false)
	cfg := baseConfig(a.addr, b.addr)
	cfg.Pools[0].Outlier = pool.Outlier{ConsecutiveFailures: 1, BaseEjection: 10 * time.Minute, MaxEjection: 10 * time.Minute, MaxEjectedPercent: 50}
	cfg.Pools[0].Health = &health.Spec{Path: "/healthz", Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 3}
	lb := start(t, cfg)
	state := func() (string, string) {
		for _, ts := range lb.Status().Pools[0].Targets {
			if ts.Addr == a.addr {
				return ts.State, ts.Reason
			}
		}
		return "", ""
	}
	c := client(t)
	ejected := false
	for i := 0; i < 10 && !ejected; i++ {
		get(t, c, lb.url+"/fail")
		st, reason := state()
		// The check may already have ended the ejection.
		ejected = st == "ejected" || reason == "ejection ended: health check passed"
	}
	if !ejected {
		t.Fatal("target a was never ejected")
	}
	waitFor(t, 10*time.Second, "ejection ended by a passing check", func() bool {
		st, reason := state()
		return st == "healthy" && reason == "ejection ended: health check passed"
	})
	seen := false
	for i := 0; i < 10 && !seen; i++ {
		_, body := get(t, c, lb.url+"/")
		seen = body == "a"
	}
	if !seen {
		t.Fatal("target a not picked after its ejection ended")
	}
}

// TestTryTimeoutOff: with the try timeout off a long poll waits for its
// answer however long the target takes (a negative TryTimeout used to be
// rejected).
func TestTryTimeoutOff(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		// A long poll: the answer comes when there is news. It outlasts
		// several 20 ms sweeps of the event loops.
		select {
		case <-time.After(150 * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(w, "news")
	})
	cfg := baseConfig(be.addr)
	cfg.Pools[0].TryTimeout = -1
	lb := start(t, cfg)
	c := client(t)
	for _, path := range []string{"/poll", "/poll?again"} {
		resp, body := get(t, c, lb.url+path)
		if resp.StatusCode != 200 || body != "news" {
			t.Fatalf("long poll %s: %d %q", path, resp.StatusCode, body)
		}
	}
}
