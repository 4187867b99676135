package adminapi_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/buildinfo"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
)

const token = "test-token-0123456789"

// fixture is a real balancer on 127.0.0.1:0 with one pool "app" of two
// httptest targets, and its admin API served by an httptest server.
type fixture struct {
	b       *lb.Balancer
	web     string // balancer base URL
	admin   *httptest.Server
	c       *client.Client
	targets []*httptest.Server
	reload  func(ctx context.Context) error
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{}
	for i := range 3 {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "target %d", i)
		}))
		t.Cleanup(s.Close)
		f.targets = append(f.targets, s)
	}
	cfg := lb.Config{
		Listeners: []lb.Listener{{Name: "web", Addr: "127.0.0.1:0"}},
		Routes:    []lb.Route{{Name: "all", Pool: "app"}},
		Pools: []lb.PoolConfig{{Name: "app", Targets: []pool.TargetSpec{
			{Addr: f.addr(0)}, {Addr: f.addr(1)},
		}}},
	}
	b, err := lb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	f.b = b
	f.web = "http://" + b.Addr("web").String()
	mux := http.NewServeMux()
	adminapi.LBRoutes(mux, b, func(ctx context.Context) error { return f.reload(ctx) })
	f.reload = func(context.Context) error { return nil }
	f.admin = httptest.NewServer(adminapi.RequireToken(token, mux))
	t.Cleanup(f.admin.Close)
	f.c = client.New(f.admin.URL, token)
	return f
}

func (f *fixture) addr(i int) string { return strings.TrimPrefix(f.targets[i].URL, "http://") }

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestEveryLBRouteNeedsTheToken(t *testing.T) {
	f := newFixture(t)
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/lb/status", ""},
		{"GET", "/v1/lb/pools", ""},
		{"POST", "/v1/lb/pools/app/targets", `{"addr":"127.0.0.1:1"}`},
		{"DELETE", "/v1/lb/pools/app/targets/" + f.addr(0), ""},
		{"POST", "/v1/lb/pools/app/targets/" + f.addr(0) + "/drain", `{}`},
		{"POST", "/v1/lb/pools/app/targets/" + f.addr(0) + "/undrain", ""},
		{"PUT", "/v1/lb/pools/app/targets/" + f.addr(0) + "/weight", `{"weight":2}`},
		{"POST", "/v1/lb/reload", ""},
		{"POST", "/v1/lb/maintenance", `{"on":true}`},
		{"GET", "/metrics", ""},
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", token} {
		for _, r := range routes {
			req, _ := http.NewRequest(r.method, f.admin.URL+r.path, strings.NewReader(r.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with auth %q: %d, want 401", r.method, r.path, auth, resp.StatusCode)
			}
		}
	}
	// Nothing above changed the pool.
	pools, err := f.c.Pools(context.Background())
	if err != nil || len(pools) != 1 || len(pools[0].Targets) != 2 || pools[0].Targets[0].State != "healthy" {
		t.Fatalf("pool changed by unauthenticated calls: %+v %v", pools, err)
	}
}

func TestLBTargetLifecycleThroughClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	if err := f.c.AddTarget(ctx, "app", f.addr(2), 3); err != nil {
		t.Fatal(err)
	}
	if err := f.c.AddTarget(ctx, "app", f.addr(2), 1); !client.IsStatus(err, http.StatusConflict) {
		t.Fatalf("duplicate add: %v, want 409", err)
	}
	if err := f.c.AddTarget(ctx, "nope", f.addr(2), 1); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("unknown pool: %v, want 404", err)
	}
	for _, bad := range []struct {
		addr   string
		weight int
	}{{"no-port", 1}, {"127.0.0.1:0", 1}, {"127.0.0.1:99", 257}, {"127.0.0.1:99", -1}} {
		if err := f.c.AddTarget(ctx, "app", bad.addr, bad.weight); !client.IsStatus(err, http.StatusBadRequest) {
			t.Errorf("add %+v: %v, want 400", bad, err)
		}
	}
	st, err := f.c.LBStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pools) != 1 || len(st.Pools[0].Targets) != 3 || st.Pools[0].Targets[2].Weight != 3 || st.Pools[0].Healthy != 3 {
		t.Fatalf("status after add: %+v", st.Pools)
	}
	if len(st.Listeners) != 1 || st.Listeners[0].Addr != strings.TrimPrefix(f.web, "http://") || len(st.Routes) != 1 {
		t.Errorf("status listeners and routes: %+v %+v", st.Listeners, st.Routes)
	}

	if err := f.c.SetWeight(ctx, "app", f.addr(2), 7); err != nil {
		t.Fatal(err)
	}
	if err := f.c.SetWeight(ctx, "app", "127.0.0.1:9", 7); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("weight of unknown target: %v, want 404", err)
	}
	if err := f.c.SetWeight(ctx, "app", f.addr(2), 0); !client.IsStatus(err, http.StatusBadRequest) {
		t.Fatalf("weight 0: %v, want 400", err)
	}

	// Drain with wait: no request in flight, so it is idle at once.
	res, err := f.c.DrainTarget(ctx, "app", f.addr(0), 5*time.Second, true)
	if err != nil || !res.Idle || res.Addr != f.addr(0) || res.Pool != "app" {
		t.Fatalf("drain: %+v %v", res, err)
	}
	pools, _ := f.c.Pools(ctx)
	if s := pools[0].Targets[0]; s.State != "draining" || s.Reason == "" {
		t.Fatalf("drained target: %+v", s)
	}
	for range 6 {
		if code, _, body := get(t, f.web+"/"); code != 200 || body == "target 0" {
			t.Fatalf("request after drain went to the drained target or failed: %d %q", code, body)
		}
	}

	// Undrain: the drained target is back in rotation.
	if err := f.c.UndrainTarget(ctx, "app", f.addr(0)); err != nil {
		t.Fatalf("undrain: %v", err)
	}
	pools, _ = f.c.Pools(ctx)
	if s := pools[0].Targets[0]; s.State != "healthy" || s.Reason != "undrained" {
		t.Fatalf("undrained target: %+v", s)
	}
	back := false
	for i := 0; i < 20 && !back; i++ { // weights 1, 1 and 7: one pick in 9
		_, _, body := get(t, f.web+"/")
		back = body == "target 0"
	}
	if !back {
		t.Fatal("undrained target got no request")
	}
	if err := f.c.UndrainTarget(ctx, "app", "127.0.0.1:9"); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("undrain of unknown target: %v, want 404", err)
	}

	res, err = f.c.RemoveTarget(ctx, "app", f.addr(1), true)
	if err != nil || !res.Idle {
		t.Fatalf("remove: %+v %v", res, err)
	}
	pools, _ = f.c.Pools(ctx)
	for _, tg := range pools[0].Targets {
		if tg.Addr == f.addr(1) {
			t.Fatalf("removed target still listed: %+v", pools[0].Targets)
		}
	}
	if _, err := f.c.RemoveTarget(ctx, "app", f.addr(1), false); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("remove twice: %v, want 404", err)
	}
	// A target being removed cannot be put back.
	if err := f.c.AddTarget(ctx, "app", f.addr(1), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.RemoveTarget("app", f.addr(1)); err != nil {
		t.Fatal(err)
	}
	if err := f.c.UndrainTarget(ctx, "app", f.addr(1)); err != nil && !client.IsStatus(err, http.StatusConflict) && !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("undrain of a removed target: %v, want 409 (or 404 once gone)", err)
	}
}

func TestLBMaintenanceReloadAndMetrics(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	if err := f.c.Maintenance(ctx, true, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	code, h, body := get(t, f.web+"/")
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") != "30" || !strings.Contains(body, "maintenance") {
		t.Fatalf("maintenance on: %d %q %q", code, h.Get("Retry-After"), body)
	}
	st, err := f.c.LBStatus(ctx)
	if err != nil || !st.Maintenance {
		t.Fatalf("status during maintenance: %+v %v", st, err)
	}
	if err := f.c.Maintenance(ctx, false, 0); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, f.web+"/"); code != http.StatusOK {
		t.Fatalf("maintenance off: %d", code)
	}

	called := 0
	f.reload = func(context.Context) error { called++; return nil }
	if err := f.c.Reload(ctx); err != nil || called != 1 {
		t.Fatalf("reload: %v (called %d)", err, called)
	}
	f.reload = func(context.Context) error { return errors.New("lb.yaml:3:5: pools[0].name: duplicate pool name") }
	err = f.c.Reload(ctx)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, "lb.yaml:3:5") {
		t.Fatalf("rejected reload: %v", err)
	}

	code, _, body = get(t, f.admin.URL+"/metrics") // no token: 401
	if code != http.StatusUnauthorized {
		t.Fatalf("metrics without token: %d", code)
	}
	req, _ := http.NewRequest("GET", f.admin.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "# TYPE") {
		t.Fatalf("metrics: %d %.200s", resp.StatusCode, b)
	}
}

func TestLBBodiesAreStrict(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/lb/pools/app/targets", `{"addr":"127.0.0.1:5","wieght":2}`},
		{"POST", "/v1/lb/pools/app/targets", `{"addr":"127.0.0.1:5"} {}`},
		{"POST", "/v1/lb/pools/app/targets", `[1]`},
		{"POST", "/v1/lb/pools/app/targets", `{"addr":"127.0.0.1:5","pad":"` + strings.Repeat("x", 70<<10) + `"}`},
		{"PUT", "/v1/lb/pools/app/targets/" + f.addr(0) + "/weight", `{}`},
		{"POST", "/v1/lb/pools/app/targets/" + f.addr(0) + "/drain", `{"timeout":"soon"}`},
		{"POST", "/v1/lb/pools/app/targets/" + f.addr(0) + "/drain?wait=maybe", `{}`},
		{"POST", "/v1/lb/maintenance", `{"retry_after":"1s"}`},
		{"POST", "/v1/lb/maintenance", `{"on":true,"retry_after":"-1s"}`},
	} {
		req, _ := http.NewRequest(c.method, f.admin.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"error"`) {
			t.Errorf("%s %s %.60s: %d %s, want 400 with an error body", c.method, c.path, c.body, resp.StatusCode, b)
		}
	}
}

// The admin /metrics of both daemons (LBRoutes serves it for shoal lb and
// shoal up) names the build that runs.
func TestLBMetricsNameTheBuild(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("GET", f.admin.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	in := buildinfo.Read()
	want := fmt.Sprintf("shoal_build_info{commit=%q,go_version=%q,version=%q} 1\n", cmp.Or(in.Commit, "unknown"), in.GoVersion, in.Version)
	if resp.StatusCode != 200 || !strings.Contains(string(b), want) || !strings.Contains(string(b), "shoal_lb_") {
		t.Fatalf("metrics: %d, want %q and the balancer's series in:\n%.2000s", resp.StatusCode, want, b)
	}
}
