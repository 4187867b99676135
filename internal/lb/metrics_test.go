package lb

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// TestMetricsLabelsStayBounded holds /metrics to labels whose values do
// not grow with deploys: no series is labelled with a target's address,
// and requests are counted by status code.
func TestMetricsLabelsStayBounded(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/teapot" {
			w.WriteHeader(http.StatusTeapot)
		}
		io.WriteString(w, "hello")
	})
	lb := start(t, baseConfig(be.addr))
	c := client(t)
	get(t, c, lb.url+"/")
	get(t, c, lb.url+"/teapot")
	scrape := func() string {
		rec := httptest.NewRecorder()
		lb.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	want := `shoal_lb_requests_total{code="418",pool="app",route="all"} 1`
	waitFor(t, 5*time.Second, "the second request recorded", func() bool {
		return strings.Contains(scrape(), want)
	})
	text := scrape()
	if !strings.Contains(text, `shoal_lb_requests_total{code="200",pool="app",route="all"} 1`) {
		t.Errorf("metrics lack the 200 count:\n%s", text)
	}
	if strings.Contains(text, be.addr) {
		t.Errorf("metrics name the target %s:\n%s", be.addr, text)
	}
	for _, l := range regexp.MustCompile(`(?m)^shoal_\w+\{[^}]*\}`).FindAllString(text, -1) {
		if strings.Contains(l, "target=") || strings.Contains(l, "code_class=") {
			t.Errorf("series %s has a target or code_class label", l)
		}
	}
}

// TestEjectionTallyIsMonotonic checks that the per-pool ejection counter
// keeps the counts of targets that went away (a deploy replaces them all)
// and of a target added again under the same address.
func TestEjectionTallyIsMonotonic(t *testing.T) {
	var et ejectionTally
	ts := func(kv ...any) []pool.TargetStatus {
		var out []pool.TargetStatus
		for i := 0; i < len(kv); i += 2 {
			out = append(out, pool.TargetStatus{Addr: kv[i].(string), Ejections: int64(kv[i+1].(int))})
		}
		return out
	}
	steps := []struct {
		targets []pool.TargetStatus
		want    int64
	}{
		{ts("a", 0, "b", 1), 1},
		{ts("a", 2, "b", 1), 3},
		{ts("c", 0), 3},         // a and b replaced by c
		{ts("c", 1, "a", 0), 4}, // a back under the same address
		{ts("c", 1, "a", 1), 5},
		{ts("c", 0, "a", 1), 5}, // c removed and added again between scrapes
		{nil, 5},
	}
	for i, s := range steps {
		if got := et.total("app", s.targets); got != s.want {
			t.Fatalf("step %d: total %d, want %d", i, got, s.want)
		}
	}
	if got := et.total("other", ts("a", 7)); got != 7 {
		t.Fatalf("other pool: total %d, want 7 (pools counted apart)", got)
	}
}
