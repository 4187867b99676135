package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/dashboard/demo"
)

// autoscaled is the demo source with an auto-scaling state on its groups.
type autoscaled struct {
	*demo.Source
	a atomic.Pointer[dashboard.Autoscale]
}

func (s *autoscaled) Groups(ctx context.Context) ([]dashboard.Group, error) {
	gs, err := s.Source.Groups(ctx)
	for i := range gs {
		gs[i].Autoscale = s.a.Load()
	}
	return gs, err
}

func TestOverviewShowsAutoscale(t *testing.T) {
	now := time.Now()
	src := &autoscaled{Source: demo.New(demo.Options{Seed: 1, StartTicks: 1})}
	ui := dashboard.New(dashboard.Options{Token: token, Source: src, Now: func() time.Time { return now }, Interval: 20 * time.Millisecond})
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	srv := httptest.NewServer(mux)
	defer func() { ui.Close(); srv.Close() }()
	e := &env{t: t, src: src.Source, ui: ui, srv: srv}
	c, _ := e.login()

	// Without auto scaling, the overview has no such section.
	if _, body := e.get(c, "/ui/"); strings.Contains(body, "data-autoscale") {
		t.Fatal("overview shows auto scaling for a group without it")
	}

	src.a.Store(&dashboard.Autoscale{
		State: "cooling_out", Min: 2, Max: 10,
		Policies: []dashboard.AutoscalePolicy{
			{Name: "rps", Metric: "rps_per_instance", Value: 30, Target: 20, OK: true},
			{Name: "slow", Metric: "latency_p95", Value: 0.12, Target: 0.2, OK: true},
			{Name: "cpu", Metric: "cpu", OK: false, Note: "no warm instance"},
		},
		LastChange: &dashboard.AutoscaleChange{Time: now.Add(-2 * time.Minute), From: 2, To: 4, Reason: "rps 30 above target 20"},
		Held:       "cooldown after scale out",
	})
	_, body := e.get(c, "/ui/")
	for _, w := range []string{
		`data-autoscale data-paused="false"`, "on · cooling_out", "between 2 and 10 instances",
		`data-policy="rps" data-ok="true"`, "30 req/s per instance of 20 req/s per instance target (150%)",
		`<meter min="0" max="40" high="20" optimum="0" value="30"`,
		"120 ms of 200 ms target (60%)",
		`data-policy="cpu" data-ok="false"`, "no data yet: no warm instance",
		`data-last-change="4"`, "Last change 2 → 4 instances", "rps 30 above target 20",
		"Holding: cooldown after scale out",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("overview lacks %q", w)
		}
	}
	if n, g := strings.Count(body, "<meter"), strings.Count(body, "data-autoscale "); n != 2*g {
		t.Errorf("want a bar for each of the 2 policies with data in %d groups, got %d", g, n)
	}

	src.a.Store(&dashboard.Autoscale{Paused: true, State: "paused", Min: 1, Max: 3, Policies: []dashboard.AutoscalePolicy{}})
	_, body = e.get(c, "/ui/")
	for _, w := range []string{`data-paused="true"`, "paused</span>", "No policies.", "No decision yet."} {
		if !strings.Contains(body, w) {
			t.Errorf("paused overview lacks %q", w)
		}
	}
}
