package adminapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsHaveGoAndProcessSeries checks that the admin /metrics serves
// the Go runtime's and the process's series beside the balancer's.
func TestMetricsHaveGoAndProcessSeries(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("GET", f.admin.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d %.200s", resp.StatusCode, b)
	}
	for _, want := range []string{"\nshoal_lb_healthy_targets{pool=\"app\"} 2\n", "\ngo_goroutines ", "\ngo_memstats_heap_alloc_bytes ",
		"\nprocess_cpu_seconds_total ", "\nprocess_resident_memory_bytes ", "\nprocess_open_fds "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", strings.TrimSpace(want))
		}
	}
}
