package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

const wait = 5 * time.Second // upper bound for anything to happen

// backend is a real HTTP server whose status can be switched.
type backend struct {
	*httptest.Server
	status atomic.Int32
	host   atomic.Value // last Host header
	uri    atomic.Value // last request URI
}

func newBackend(t *testing.T, status int) *backend {
	t.Helper()
	b := &backend{}
	b.status.Store(int32(status))
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.host.Store(r.Host)
		b.uri.Store(r.RequestURI)
		w.WriteHeader(int(b.status.Load()))
		w.Write([]byte(strings.Repeat("x", 100<<10))) // bigger than maxDrain
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

func fastSpec() Spec {
	return Spec{Interval: 10 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2}
}

// start runs c until the test ends and checks that Run returns.
func start(t *testing.T, c *Checker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(wait):
			t.Error("Run did not return after cancel")
		}
	})
}

func next(t *testing.T, ch <-chan Result) Result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(wait):
		t.Fatal("no health report before the deadline")
		return Result{}
	}
}

func noReport(t *testing.T, ch <-chan Result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected report %+v", r)
	default:
	}
}

// waitChecks waits until addr has completed at least n more probes.
func waitChecks(t *testing.T, c *Checker, addr string, n int64) TargetStatus {
	t.Helper()
	st, _ := c.Status(addr)
	want := st.Checks + n
	testenv.Eventually(t, wait, func() error {
		if st, _ = c.Status(addr); st.Checks < want {
			return fmt.Errorf("%s: %d checks, want %d", addr, st.Checks, want)
		}
		return nil
	})
	return st
}

func TestTransitions(t *testing.T) {
	b := newBackend(t, 200)
	ch := make(chan Result, 10)
	var c *Checker
	c = New(fastSpec(), func(r Result) {
		c.Status(r.Addr) // deadlocks if report ran under the lock
		ch <- r
	})
	if err := c.Add(b.addr(), TargetOpts{}); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	if r := next(t, ch); !r.Healthy || r.Reason != "status 200" || r.Addr != b.addr() {
		t.Fatalf("first report %+v", r)
	}
	if st, _ := c.Status(b.addr()); st.State != Healthy || st.Passes < 2 {
		t.Fatalf("status %+v", st)
	}
	b.status.Store(500)
	if r := next(t, ch); r.Healthy || r.Reason != "status 500" {
		t.Fatalf("report %+v, want unhealthy status 500", r)
	}
	b.status.Store(204)
	if r := next(t, ch); !r.Healthy || r.Reason != "status 204" {
		t.Fatalf("report %+v, want healthy again", r)
	}
	waitChecks(t, c, b.addr(), 5)
	noReport(t, ch) // only transitions are reported
}

func TestUnknownToUnhealthyReported(t *testing.T) {
	b := newBackend(t, 503)
	ch := make(chan Result, 10)
	c := New(fastSpec(), func(r Result) { ch <- r })
	start(t, c) // Add during Run
	if err := c.Add(b.addr(), TargetOpts{}); err != nil {
		t.Fatal(err)
	}
	if r := next(t, ch); r.Healthy || r.Reason != "status 503" {
		t.Fatalf("report %+v", r)
	}
}

func TestInitiallyHealthy(t *testing.T) {
	b := newBackend(t, 200)
	ch := make(chan Result, 10)
	c := New(fastSpec(), func(r Result) { ch <- r })
	if err := c.Add(b.addr(), TargetOpts{InitiallyHealthy: true}); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	waitChecks(t, c, b.addr(), 5)
	noReport(t, ch)
	b.status.Store(500)
	if r := next(t, ch); r.Healthy {
		t.Fatalf("report %+v", r)
	}
}

func TestGraceIgnoresFailuresCountsPasses(t *testing.T) {
	b := newBackend(t, 500)
	ch := make(chan Result, 10)
	spec := fastSpec()
	spec.UnhealthyThreshold = 1
	c := New(spec, func(r Result) { ch <- r })
	if err := c.Add(b.addr(), TargetOpts{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	st := waitChecks(t, c, b.addr(), 5)
	if st.State != Unknown || st.Failures != 0 || !st.InGrace || st.Reason != "status 500" {
		t.Fatalf("status in grace %+v", st)
	}
	noReport(t, ch)
	b.status.Store(200)
	if r := next(t, ch); !r.Healthy {
		t.Fatalf("report %+v, want healthy during grace", r)
	}
}

func TestGraceEnds(t *testing.T) {
	b := newBackend(t, 500)
	ch := make(chan Result, 10)
	c := New(fastSpec(), func(r Result) { ch <- r })
	const grace = 100 * time.Millisecond
	added := time.Now()
	if err := c.Add(b.addr(), TargetOpts{Grace: grace}); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	if r := next(t, ch); r.Healthy {
		t.Fatalf("report %+v", r)
	}
	if since := time.Since(added); since < grace {
		t.Fatalf("unhealthy after %v, inside the %v grace", since, grace)
	}
}

func TestFailureReasons(t *testing.T) {
	// A port with nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()

	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until the probe gives up
	}))
	t.Cleanup(hang.Close)

	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(reset.Close)

	spec := fastSpec()
	spec.UnhealthyThreshold = 1
	spec.Timeout = 50 * time.Millisecond
	ch := make(chan Result, 10)
	c := New(spec, func(r Result) { ch <- r })
	want := map[string]string{
		refused:                                  "connection refused",
		strings.TrimPrefix(hang.URL, "http://"):  "timeout after 50ms",
		strings.TrimPrefix(reset.URL, "http://"): "connection closed before response",
	}
	for a := range want {
		if err := c.Add(a, TargetOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	start(t, c)
	for range want {
		r := next(t, ch)
		if r.Healthy || r.Reason != want[r.Addr] {
			t.Errorf("%s: %+v, want reason %q", r.Addr, r, want[r.Addr])
		}
	}
}

func TestRequestShape(t *testing.T) {
	b := newBackend(t, 302) // a redirect is a pass and is not followed
	b.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.host.Store(r.Host)
		b.uri.Store(r.RequestURI)
		if r.URL.Path != "/healthz" {
			w.WriteHeader(500)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	spec := fastSpec()
	spec.Path = "/healthz?deep=1"
	spec.Host = "app.internal"
	ch := make(chan Result, 10)
	c := New(spec, func(r Result) { ch <- r })
	if err := c.Add(b.addr(), TargetOpts{}); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	if r := next(t, ch); !r.Healthy || r.Reason != "status 302" {
		t.Fatalf("report %+v", r)
	}
	if h, u := b.host.Load(), b.uri.Load(); h != "app.internal" || u != "/healthz?deep=1" {
		t.Fatalf("host %v uri %v", h, u)
	}
}

func TestAddRemoveRun(t *testing.T) {
	b := newBackend(t, 200)
	ch := make(chan Result, 10)
	c := New(fastSpec(), func(r Result) { ch <- r })
	if err := c.Add(b.addr(), TargetOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(b.addr(), TargetOpts{}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate add: %v", err)
	}
	if err := c.Remove("127.0.0.1:1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown remove: %v", err)
	}
	start(t, c)
	next(t, ch)
	if err := c.Remove(b.addr()); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Status(b.addr()); ok {
		t.Fatal("status of a removed target")
	}
	// Re-added, it starts from Unknown and is reported again.
	if err := c.Add(b.addr(), TargetOpts{}); err != nil {
		t.Fatal(err)
	}
	for {
		r := next(t, ch) // a report racing Remove may come first
		if st, _ := c.Status(b.addr()); r.Healthy && st.State == Healthy {
			break
		}
	}
	if all := c.Statuses(); len(all) != 1 || all[0].Addr != b.addr() {
		t.Fatalf("Statuses %+v", all)
	}
	if err := c.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
}

func TestJitter(t *testing.T) {
	c := New(Spec{Interval: time.Second, Jitter: 0.5}, nil)
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := c.interval()
		if d < 500*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("interval %v outside 1s ± 50%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct intervals", len(seen))
	}
	if d := New(Spec{Interval: time.Second}, nil).interval(); d != time.Second {
		t.Fatalf("no jitter: %v", d)
	}
}

func TestDefaultsAndValidate(t *testing.T) {
	s := Spec{}.WithDefaults()
	if s.Path != "/" || s.Interval != 5*time.Second || s.Timeout != 2*time.Second ||
		s.HealthyThreshold != 2 || s.UnhealthyThreshold != 3 || FormatStatuses(s.Statuses) != DefaultStatuses {
		t.Fatalf("defaults %+v", s)
	}
	if err := (Spec{}).Validate(); err != nil {
		t.Fatalf("zero spec: %v", err)
	}
	err := Spec{Path: "healthz", Jitter: 2, Statuses: []StatusRange{{700, 800}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "path") || !strings.Contains(err.Error(), "jitter") || !strings.Contains(err.Error(), "700") {
		t.Fatalf("validate: %v", err)
	}
}

func TestParseStatuses(t *testing.T) {
	for in, want := range map[string]string{
		"200-399":            "200-399",
		"200":                "200",
		" 200 , 204,300-302": "200,204,300-302",
		"500-500":            "500",
	} {
		rs, err := ParseStatuses(in)
		if err != nil || FormatStatuses(rs) != want {
			t.Errorf("ParseStatuses(%q) = %v, %v; want %s", in, rs, err, want)
		}
	}
	for _, bad := range []string{"", "2xx", "399-200", "99", "600", "200-", "-200", "200,,300", "+200", "0200"} {
		if rs, err := ParseStatuses(bad); err == nil {
			t.Errorf("ParseStatuses(%q) = %v, want error", bad, rs)
		}
	}
}

func FuzzParseStatuses(f *testing.F) {
	for _, s := range []string{"200-399", "200,204", " 500 ", "399-200", "", "1-2-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseStatuses(s)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Min < 100 || r.Max > 599 || r.Max < r.Min {
				t.Fatalf("%q gave range %v", s, r)
			}
		}
		again, err := ParseStatuses(FormatStatuses(rs))
		if err != nil || FormatStatuses(again) != FormatStatuses(rs) {
			t.Fatalf("%q does not round trip: %v %v", s, again, err)
		}
	})
}
