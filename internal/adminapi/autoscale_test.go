package adminapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/internal/client"
)

func TestAutoscaleRoutesNeedToken(t *testing.T) {
	mux := http.NewServeMux()
	AutoscaleRoutes(mux, newTestController(t))
	srv := httptest.NewServer(RequireToken("right-token", mux))
	defer srv.Close()
	for _, tok := range []string{"", "wrong-token"} {
		for _, r := range []struct{ method, body string }{{"GET", ""}, {"POST", `{"paused":true}`}} {
			req, _ := http.NewRequest(r.method, srv.URL+"/v1/autoscale", strings.NewReader(r.body))
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s /v1/autoscale with token %q: %d, want 401", r.method, tok, resp.StatusCode)
			}
		}
	}
}

func TestAutoscaleRoutesAnswer(t *testing.T) {
	mux := http.NewServeMux()
	AutoscaleRoutes(mux, newTestController(t))
	srv := httptest.NewServer(RequireToken("tok", mux))
	defer srv.Close()
	c := client.New(srv.URL, "tok")
	ctx := context.Background()
	a, err := c.Autoscale(ctx)
	if err != nil || a.Enabled || a.Policies == nil {
		t.Fatalf("autoscale = %+v, %v; want not enabled, empty policies", a, err)
	}
	// The test app has no autoscale section: pausing is a conflict.
	if _, err := c.PauseAutoscale(ctx, true); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("pause without autoscale: %v, want 409", err)
	}
	for _, body := range []string{`{}`, `{"paused":"yes"}`, `{"paused":true,"x":1}`, `{"paused":true} {}`, `nope`} {
		resp, err := http.DefaultClient.Do(authed(t, "POST", srv.URL+"/v1/autoscale", body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("autoscale body %q: %d, want 400", body, resp.StatusCode)
		}
	}
}

func TestWithMetricsAppends(t *testing.T) {
	inner := http.NewServeMux()
	inner.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "" {
			t.Error("inner handler asked for compression")
		}
		io.WriteString(w, "# TYPE lb_requests counter\nlb_requests 3\n")
	})
	inner.HandleFunc("GET /other", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "other") })
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "shoal_autoscale_desired", Help: "d"})
	g.Set(4)
	reg.MustRegister(g)
	srv := httptest.NewServer(WithMetrics(inner, reg))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "lb_requests 3\n") || !strings.Contains(string(b), "shoal_autoscale_desired 4\n") {
		t.Errorf("metrics:\n%s", b)
	}
	resp, err = http.Get(srv.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "other" {
		t.Errorf("other = %q", b)
	}
}
