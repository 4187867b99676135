package lb

import (
	"testing"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/pool"
)

// TestFastStickyPickAllocatesNothing: the fast path picks from a sticky
// pool by a key that views its buffer; it builds no request (which took
// several allocations per pick). A SockJS pool is used, since verifying
// a sticky cookie allocates in its HMAC either way.
func TestFastStickyPickAllocatesNothing(t *testing.T) {
	p := pool.New(pool.Options{Sticky: pool.Sticky{SockJSPrefixes: []string{"/sockjs"}}})
	for _, a := range []string{"10.0.0.1:80", "10.0.0.2:80"} {
		if err := p.Add(pool.TargetSpec{Addr: a}); err != nil {
			t.Fatal(err)
		}
	}
	pe := &poolEntry{p: p, stickyPick: true}
	c := &evClient{evReq: new(evReq), buf: []byte("POST /sockjs/1/sess/xhr_streaming HTTP/1.1\r\nHost: a\r\nCookie: x=1; y=2\r\n\r\n")}
	if !h1.ParseRequest(c.buf, &c.h, fieldKinds) {
		t.Fatal("request outside the fast subset")
	}
	first, err := p.Pick(c.stickyKey(pe), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(200, func() {
		ch, err := p.Pick(c.stickyKey(pe), nil)
		if err != nil || ch.Target != first.Target {
			t.Fatalf("pick %v, %v; want the session's target %s", ch.Target, err, first.Target.Addr())
		}
	})
	if n != 0 {
		t.Errorf("%.1f allocations per sticky pick, want 0", n)
	}
}
