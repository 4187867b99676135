package lb

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// heldRoutes are the routes heldOpen is tried on: a plain one on a pool
// with SockJS stickiness, and one marked long-lived.
func heldRoutes() (plain, marked *route) {
	pe := &poolEntry{cfg: PoolConfig{Name: "app", Sticky: pool.Sticky{SockJSPrefixes: []string{"/sockjs"}}}}
	plain = &route{name: "all", prefix: "/", pool: pe, longPaths: []string{"/updates", "/feeds/"}}
	marked = &route{name: "stream", prefix: "/stream", pool: pe, longLived: true}
	return plain, marked
}

func TestHeldOpenClasses(t *testing.T) {
	plain, marked := heldRoutes()
	for _, tc := range []struct {
		name                       string
		rt                         *route
		method, path, query, ctype string
		want                       bool
	}{
		{"plain GET", plain, "GET", "/", "", "", false},
		{"plain GET html", plain, "GET", "/page", "a=b", "text/html; charset=utf-8", false},
		{"plain slow POST", plain, "POST", "/api/report", "", "application/json", false},
		{"no route", nil, "GET", "/x", "", "", false},
		{"sse", plain, "GET", "/events", "", "text/event-stream", true},
		{"sse params and case", plain, "GET", "/events", "", " Text/Event-Stream ; charset=utf-8", true},
		{"sse on no route", nil, "GET", "/events", "", "text/event-stream", true},
		{"not sse", plain, "GET", "/events", "", "text/event-streamx", false},
		{"sockjs xhr_streaming", plain, "POST", "/sockjs/123/abcdef/xhr_streaming", "", "", true},
		{"sockjs xhr polling", plain, "POST", "/sockjs/123/abcdef/xhr", "", "", true},
		{"sockjs eventsource", plain, "GET", "/sockjs/123/abcdef/eventsource", "", "", true},
		{"sockjs htmlfile", plain, "GET", "/sockjs/123/abcdef/htmlfile", "c=cb", "", true},
		{"sockjs jsonp", plain, "GET", "/sockjs/123/abcdef/jsonp", "c=cb", "", true},
		{"sockjs xhr_send", plain, "POST", "/sockjs/123/abcdef/xhr_send", "", "", false},
		{"sockjs jsonp_send", plain, "POST", "/sockjs/123/abcdef/jsonp_send", "", "", false},
		{"sockjs websocket", plain, "GET", "/sockjs/123/abcdef/websocket", "", "", false},
		{"sockjs info", plain, "GET", "/sockjs/info", "cb=x", "", false},
		{"sockjs other prefix", plain, "POST", "/other/123/abcdef/xhr_streaming", "", "", false},
		{"socket.io polling", plain, "GET", "/socket.io/", "EIO=4&transport=polling&t=P1", "", true},
		{"socket.io polling v3", plain, "GET", "/socket.io/", "transport=polling&EIO=3&sid=abc", "", true},
		{"socket.io polling send", plain, "POST", "/socket.io/", "EIO=4&transport=polling&sid=abc", "", false},
		{"socket.io websocket", plain, "GET", "/socket.io/", "EIO=4&transport=websocket", "", false},
		{"transport without EIO", plain, "GET", "/search", "transport=polling", "", false},
		{"marked route", marked, "GET", "/stream/x", "", "", true},
		{"marked path", plain, "GET", "/updates", "", "", true},
		{"marked path below", plain, "GET", "/updates/42", "", "", true},
		{"marked path not a segment", plain, "GET", "/updatesx", "", "", false},
		{"marked slash prefix", plain, "GET", "/feeds/x", "", "", true},
	} {
		if got := heldOpen(tc.rt, tc.method, tc.path, tc.query, tc.ctype); got != tc.want {
			t.Errorf("%s: heldOpen(%q %q ? %q, %q) = %v, want %v", tc.name, tc.method, tc.path, tc.query, tc.ctype, got, tc.want)
		}
	}
}

// TestHeldOpenAllocatesNothing holds the classification of an ordinary
// request (and of a held one) to zero allocations: it runs on every
// request of both paths.
func TestHeldOpenAllocatesNothing(t *testing.T) {
	plain, _ := heldRoutes()
	n := testing.AllocsPerRun(200, func() {
		heldOpen(plain, "GET", "/index.html", "a=1&b=2", "")
		heldOpen(plain, "GET", "/index.html", "a=1&b=2", "text/html")
		heldOpen(plain, "GET", "/socket.io/", "EIO=4&transport=polling", "")
		heldOpen(plain, "POST", "/sockjs/1/s/xhr_streaming", "", "")
	})
	if n != 0 {
		t.Fatalf("heldOpen allocates %v times per run, want 0", n)
	}
}

func BenchmarkHeldOpenPlainGET(b *testing.B) {
	plain, _ := heldRoutes()
	b.ReportAllocs()
	for b.Loop() {
		if heldOpen(plain, "GET", "/assets/app.js", "v=3", "application/javascript") {
			b.Fatal("plain GET classified as held")
		}
	}
}

// FuzzHeldOpen: any input is classified without a panic, and the answer
// does not depend on the case of the Content-Type nor on its parameters.
func FuzzHeldOpen(f *testing.F) {
	for _, s := range [][4]string{
		{"GET", "/", "", ""},
		{"GET", "/events", "", "text/event-stream; charset=utf-8"},
		{"POST", "/sockjs/123/abc/xhr_streaming", "", ""},
		{"GET", "/sockjs//abc/xhr", "", ""},
		{"GET", "/sockjs/1/a.b/xhr", "", ""},
		{"GET", "/socket.io/", "EIO=4&transport=polling", ""},
		{"GET", "/socket.io/", "&&EIO&transport=&=", ";"},
		{"GET", "/updates/", "", "TEXT/EVENT-STREAM"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	plain, marked := heldRoutes()
	f.Fuzz(func(t *testing.T, method, path, query, ctype string) {
		got := heldOpen(plain, method, path, query, ctype)
		if !heldOpen(marked, method, path, query, ctype) {
			t.Fatalf("a long-lived route is not held for %q %q %q %q", method, path, query, ctype)
		}
		if isEventStream(ctype) != isEventStream(strings.ToUpper(ctype)+"; x=y") {
			t.Fatalf("Content-Type %q: case or parameters change the class", ctype)
		}
		if isEventStream(ctype) && !got {
			t.Fatalf("event stream %q not held", ctype)
		}
	})
}

// metricValue scrapes the balancer's /metrics and returns the value of
// the series line that starts with name (labels included), or "".
func metricValue(t *testing.T, b *Balancer, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	b.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// TestHeldExchangesLeaveLatency: long polls, streams and server-sent
// events are counted as open while held, then recorded as held: in the
// held-duration histogram and records marked Held, never in the pool's
// latency histogram nor in the request-duration histogram. A plain
// request that is as slow still counts as latency.
func TestHeldExchangesLeaveLatency(t *testing.T) {
	release := make(chan struct{})
	var arrived sync.WaitGroup
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			io.WriteString(w, "data: hello\n\n")
			w.(http.Flusher).Flush()
		}
		arrived.Done()
		<-release
		io.WriteString(w, "ok")
	})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before the backend closes, if the test fails early
	obs := &recObserver{}
	cfg := baseConfig(be.addr)
	cfg.Observer = obs
	cfg.Pools[0].Sticky.SockJSPrefixes = []string{"/sockjs"}
	cfg.Routes[0].LongLivedPaths = []string{"/poll"}
	cfg.Routes = append(cfg.Routes, Route{Name: "stream", PathPrefix: "/stream", Pool: "app", LongLived: true})
	lb := start(t, cfg)

	held := []struct{ method, path string }{
		{"GET", "/events"},
		{"POST", "/sockjs/123/abcdef/xhr_streaming"},
		{"POST", "/sockjs/123/abcdef/xhr"},
		{"GET", "/socket.io/?EIO=4&transport=polling&t=abc"},
		{"GET", "/poll/1"},
		{"GET", "/stream/x"},
	}
	plain := []string{"/slow", "/sockjs/123/abcdef/xhr_send"}
	arrived.Add(len(held) + len(plain))
	c := client(t)
	errs := make(chan error, len(held)+len(plain))
	do := func(method, path string) {
		req, _ := http.NewRequest(method, lb.url+path, nil)
		resp, err := c.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errs <- err
	}
	for _, h := range held {
		go do(h.method, h.path)
	}
	for _, p := range plain {
		go do("POST", p)
	}
	arrived.Wait()
	// The SSE answer's head is relayed before the backend holds it, so
	// every held exchange is known as such before release.
	waitFor(t, 5*time.Second, "six open held exchanges", func() bool {
		return metricValue(t, lb.Balancer, `shoal_lb_held_open{pool="app"}`) == fmt.Sprint(len(held))
	})
	if n := lb.HeldOpen("app"); n != len(held) {
		t.Errorf("HeldOpen = %d, want %d", n, len(held))
	}
	free()
	for range len(held) + len(plain) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "all records", func() bool { return len(obs.all()) == len(held)+len(plain) })
	if v := metricValue(t, lb.Balancer, `shoal_lb_held_open{pool="app"}`); v != "0" {
		t.Errorf("open held exchanges after they ended: %q, want 0", v)
	}
	if n := lb.HeldOpen("app"); n != 0 {
		t.Errorf("HeldOpen after they ended = %d, want 0", n)
	}
	nHeld := 0
	for _, r := range obs.all() {
		wantHeld := !strings.HasPrefix(r.Path, "/slow") && !strings.HasSuffix(r.Path, "/xhr_send")
		if r.Held != wantHeld {
			t.Errorf("record %s %s: Held %v, want %v", r.Method, r.Path, r.Held, wantHeld)
		}
		if r.Held {
			nHeld++
		}
	}
	if nHeld != len(held) {
		t.Errorf("%d records held, want %d", nHeld, len(held))
	}
	_, counts := lb.LatencyHistogram("app")
	var n uint64
	for _, c := range counts {
		n += c
	}
	if n != uint64(len(plain)) {
		t.Errorf("latency histogram counts %d requests, want only the %d plain ones", n, len(plain))
	}
	held1 := metricValue(t, lb.Balancer, `shoal_lb_held_duration_seconds_count{route="all"}`)
	held2 := metricValue(t, lb.Balancer, `shoal_lb_held_duration_seconds_count{route="stream"}`)
	dur := metricValue(t, lb.Balancer, `shoal_lb_request_duration_seconds_count{route="all"}`)
	if held1 != "5" || held2 != "1" || dur != fmt.Sprint(len(plain)) {
		t.Errorf("held durations %s+%s (want 5+1), request durations %s (want %d)", held1, held2, dur, len(plain))
	}
}

// TestHeldRouteValidated: a long-lived path that is not absolute is
// refused with its field.
func TestHeldRouteValidated(t *testing.T) {
	cfg := baseConfig("127.0.0.1:1")
	cfg.Routes[0].LongLivedPaths = []string{"/ok", "poll"}
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), `routes[0].long_lived_paths[1]: "poll" must start with /`) {
		t.Fatalf("New: %v", err)
	}
}
