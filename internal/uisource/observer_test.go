package uisource

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

func TestRouteOf(t *testing.T) {
	for path, want := range map[string]string{
		"":                             "/",
		"/":                            "/",
		"/healthz":                     "/healthz",
		"/api/users/1":                 "/api/",
		"/api/":                        "/api/",
		"/sockjs/123/abc/xhr":          "/sockjs/",
		"//x":                          "/",
		"/a?b/c":                       "/a",
		"*":                            "/",
		"/" + strings.Repeat("x", 100): "/" + strings.Repeat("x", maxRouteLen-1),
	} {
		if got := routeOf(path); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", path, got, want)
		}
	}
}

func FuzzRouteOf(f *testing.F) {
	for _, s := range []string{"", "/", "/api/x", "/a?b", "x", "/" + strings.Repeat("é", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r := routeOf(path)
		if r == "" || r[0] != '/' || len(r) > maxRouteLen {
			t.Fatalf("routeOf(%q) = %q", path, r)
		}
		if r != "/" && !strings.HasPrefix(path, r) {
			t.Fatalf("routeOf(%q) = %q is not a prefix", path, r)
		}
		if strings.ContainsAny(r, "?#") || strings.Count(r, "/") > 2 {
			t.Fatalf("routeOf(%q) = %q", path, r)
		}
	})
}

func TestObserverRecordsAndKeepsTheSlowest(t *testing.T) {
	series := timeseries.NewStore(timeseries.Options{})
	slow := timeseries.NewSlow(timeseries.SlowOptions{K: 3})
	o := &Observer{Series: series, Slow: slow}
	start := time.Unix(1_700_000_000, 0)
	for i := range 10 {
		r := &lb.RequestRecord{Start: start.Add(time.Duration(i) * time.Second), RequestID: "r" + string(rune('0'+i)), Method: "GET",
			Host: "example.test", Path: "/api/items/" + string(rune('0'+i)), Pool: "web", Target: "127.0.0.1:1",
			Status: 200, Queue: time.Millisecond, TTFB: time.Duration(i+1) * 100 * time.Millisecond, Transfer: 5 * time.Millisecond, RTT: 40 * time.Millisecond}
		if i == 9 {
			r.Status = 502
		}
		r.Total = r.Queue + r.TTFB + r.Transfer
		o.observe(r)
		r.Path, r.RequestID = "/overwritten", "x" // the balancer reuses its record
	}
	o.observe(&lb.RequestRecord{Start: start, Path: "/", Status: 404, Total: time.Second}) // no pool: not recorded

	now := start.Add(20 * time.Second)
	sum := series.Summarize(timeseries.Key{Group: "web"}, now, time.Minute)
	if sum.Requests != 10 || sum.Errors != 1 {
		t.Errorf("group summary = %+v", sum)
	}
	if rs := series.Summarize(timeseries.Key{Group: "web", Route: "/api/"}, now, time.Minute); rs.Requests != 10 || rs.P99 < 500*time.Millisecond {
		t.Errorf("route summary = %+v", rs)
	}
	if got := series.Summarize(timeseries.Key{Group: ""}, now, time.Minute); got.Requests != 0 {
		t.Errorf("a request without a pool was recorded: %+v", got)
	}
	top := slow.Top(now, 0)
	if len(top) != 3 {
		t.Fatalf("Top = %+v", top)
	}
	s := top[0]
	if s.RequestID != "r9" || s.Path != "/api/items/9" || s.Route != "/api/" || s.Group != "web" || s.Status != 502 ||
		s.TTFB != time.Second || s.Queue != time.Millisecond || s.Transfer != 5*time.Millisecond || s.RTT != 40*time.Millisecond || !s.Time.Equal(start.Add(9*time.Second)) {
		t.Errorf("slowest = %+v", s)
	}
}

func TestEventKinds(t *testing.T) {
	for _, c := range []struct {
		e    api.Event
		want string
	}{
		{api.Event{Type: "state", From: "in_service", State: "failed", Reason: "process killed by killed"}, dashboard.KindReplace},
		{api.Event{Type: "state", State: "pending", Reason: "replace unhealthy instance web-1"}, dashboard.KindReplace},
		{api.Event{Type: "state", State: "pending", Reason: "1 of 2 instances live"}, dashboard.KindState},
		{api.Event{Type: "state", From: "in_service", State: "unhealthy", Reason: "failed 2 health checks"}, dashboard.KindHealth},
		{api.Event{Type: "state", From: "unhealthy", State: "in_service", Reason: "passed 2 health checks"}, dashboard.KindHealth},
		{api.Event{Type: "state", From: "unhealthy", State: "draining", Reason: "unhealthy; 2 healthy instances in service"}, dashboard.KindReplace},
		{api.Event{Type: "state", From: "starting", State: "in_service", Reason: "healthy after 1s"}, dashboard.KindState},
		{api.Event{Type: "scale", Reason: "desired 2 -> 3 (shoal scale)"}, dashboard.KindScale},
		{api.Event{Type: "autoscale", Reason: "p95 412ms > 300ms"}, dashboard.KindScale},
		{api.Event{Type: "release", Reason: "made release v2"}, dashboard.KindDeploy},
		{api.Event{Type: "rollout", Reason: "v1 -> v2 done"}, dashboard.KindDeploy},
		{api.Event{Type: "backoff", Reason: "release v1 crashed 3 times"}, dashboard.KindReplace},
		{api.Event{Type: "shoal", Reason: "cannot start"}, "shoal"},
	} {
		if got := kind(c.e); got != c.want {
			t.Errorf("kind(%+v) = %q, want %q", c.e, got, c.want)
		}
	}
	s := &Source{app: "web"}
	m := s.event(api.Event{Seq: 7, Type: "state", Instance: "web-1", From: "in_service", State: "failed", Reason: "process killed by killed", Release: 2, Addr: "127.0.0.1:9"})
	if m.Reason != "in_service → failed: process killed by killed" || m.App != "web" || m.Seq != 7 || m.state != "failed" || m.release != 2 || m.addr != "127.0.0.1:9" {
		t.Errorf("event = %+v", m)
	}
}

// TestObserverWithBalancer sends real requests through a real balancer
// to a real backend and checks what the observer recorded.
func TestObserverWithBalancer(t *testing.T) {
	var hits atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/fail" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		io.WriteString(w, strings.Repeat("x", 64<<10))
	}))
	defer be.Close()
	backend := strings.TrimPrefix(be.URL, "http://")

	series := timeseries.NewStore(timeseries.Options{})
	slow := timeseries.NewSlow(timeseries.SlowOptions{})
	b, err := lb.New(lb.Config{
		Listeners: []lb.Listener{{Name: "web", Addr: "127.0.0.1:0"}},
		Routes:    []lb.Route{{Name: "all", Pool: "app"}},
		Pools:     []lb.PoolConfig{{Name: "app", Targets: []pool.TargetSpec{{Addr: backend}}}},
		Limits:    lb.Limits{ShutdownTimeout: 5 * time.Second},
		Observer:  &Observer{Series: series, Slow: slow},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("balancer: %v", err)
		}
	}()
	url := "http://" + b.Addr("web").String()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	for _, path := range []string{"/api/a", "/api/b", "/fail", "/"} {
		resp, err := hc.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The record is made after the response is complete, which the client
	// may see first: wait for the fourth, in both.
	now := func() time.Time { return time.Now().Add(time.Second) }
	err = testenv.WaitFor(testenv.Context(t, 10*time.Second), func() error {
		if s := series.Summarize(timeseries.Key{Group: "app"}, now(), time.Minute); s.Requests != 4 {
			return fmt.Errorf("%d requests recorded", s.Requests)
		}
		if n := len(slow.Top(now(), 0)); n != 4 {
			return fmt.Errorf("%d slow requests kept", n) // offered after Record
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := series.Summarize(timeseries.Key{Group: "app"}, now(), time.Minute); s.Errors != 1 {
		t.Errorf("group summary = %+v, want 1 error", s)
	}
	if s := series.Summarize(timeseries.Key{Group: "app", Route: "/api/"}, now(), time.Minute); s.Requests != 2 {
		t.Errorf("route /api/ summary = %+v", s)
	}
	top := slow.Top(now(), 0)
	if len(top) != 4 {
		t.Fatalf("slow = %+v", top)
	}
	for _, r := range top {
		if r.Group != "app" || r.Target != backend || r.Method != "GET" || r.RequestID == "" || r.TTFB <= 0 ||
			r.Total < r.TTFB || r.Total < r.Transfer {
			t.Errorf("slow request %+v", r)
		}
	}
}

// TestObserverKeepsHeldApart: a held-open exchange (a long poll, a stream,
// server-sent events) served through a real balancer goes to the Held
// store only: it is neither in the group's latency series nor among the
// slowest requests, while a plain request beside it is.
func TestObserverKeepsHeldApart(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
		}
		io.WriteString(w, "data: x\n\n")
	}))
	defer be.Close()
	series := timeseries.NewStore(timeseries.Options{})
	held := timeseries.NewStore(timeseries.Options{})
	slow := timeseries.NewSlow(timeseries.SlowOptions{})
	b, err := lb.New(lb.Config{
		Listeners: []lb.Listener{{Name: "web", Addr: "127.0.0.1:0"}},
		Routes:    []lb.Route{{Name: "all", Pool: "app", LongLivedPaths: []string{"/poll"}}},
		Pools:     []lb.PoolConfig{{Name: "app", Targets: []pool.TargetSpec{{Addr: strings.TrimPrefix(be.URL, "http://")}}}},
		Limits:    lb.Limits{ShutdownTimeout: 5 * time.Second},
		Observer:  &Observer{Series: series, Slow: slow, Held: held},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("balancer: %v", err)
		}
	}()
	url := "http://" + b.Addr("web").String()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	for _, path := range []string{"/events", "/poll/1", "/page"} {
		resp, err := hc.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	now := func() time.Time { return time.Now().Add(time.Second) }
	err = testenv.WaitFor(testenv.Context(t, 10*time.Second), func() error {
		if s := held.Summarize(timeseries.Key{Group: "app"}, now(), time.Minute); s.Requests != 2 {
			return fmt.Errorf("%d held exchanges recorded, want 2", s.Requests)
		}
		if s := series.Summarize(timeseries.Key{Group: "app"}, now(), time.Minute); s.Requests != 1 {
			return fmt.Errorf("%d requests in the latency series, want the 1 plain one", s.Requests)
		}
		if n := len(slow.Top(now(), 0)); n != 1 {
			return fmt.Errorf("%d slow requests kept", n) // offered after Record
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if top := slow.Top(now(), 0); len(top) != 1 || top[0].Path != "/page" {
		t.Errorf("slowest requests = %+v, want only /page", top)
	}
}

// TestObserverPageLoad: the Observer hands the page-load report each
// request's cache result and bytes, by group and route; a hit's time is
// the client's, not a target's; held-open exchanges stay out.
func TestObserverPageLoad(t *testing.T) {
	pl := timeseries.NewPageLoad(time.Now())
	o := &Observer{Series: timeseries.NewStore(timeseries.Options{}), Slow: timeseries.NewSlow(timeseries.SlowOptions{}), PageLoad: pl}
	start := time.Now()
	o.ObserveRequest(&lb.RequestRecord{Start: start, Pool: "web", Path: "/app.js", Status: 200, Cache: "stored",
		BodyBytes: 100 << 10, BytesOut: 100 << 10, TTFB: 30 * time.Millisecond, Transfer: 70 * time.Millisecond, Total: 110 * time.Millisecond})
	o.ObserveRequest(&lb.RequestRecord{Start: start, Pool: "web", Path: "/app.js", Status: 200, Cache: "hit",
		BodyBytes: 100 << 10, BytesOut: 25 << 10, Total: 5 * time.Millisecond})
	o.ObserveRequest(&lb.RequestRecord{Start: start, Pool: "web", Path: "/live", Status: 200, Cache: "miss", Held: true, Total: time.Minute})
	rows := pl.Report()
	if len(rows) != 1 {
		t.Fatalf("rows %+v, want one", rows)
	}
	r := rows[0]
	if r.Key != (timeseries.Key{Group: "web", Route: "/app.js"}) || r.Hits != 1 || r.Misses != 1 ||
		r.BodyBytes != 200<<10 || r.SentBytes != 125<<10 || r.TargetMedian != 100*time.Millisecond {
		t.Errorf("row %+v", r)
	}
	// Only the stored answer was large enough to time: 100 KiB in 70 ms.
	if want := float64(100<<10) / 0.07; r.Throughput < want*0.999 || r.Throughput > want*1.001 {
		t.Errorf("throughput %v, want %v", r.Throughput, want)
	}
}
