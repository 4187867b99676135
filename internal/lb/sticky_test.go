package lb

import (
	"io"
	"net/http"
	"testing"

	"github.com/shoal-dev/shoal/internal/pool"
)

// TestStickyCookie: the balancer-inserted cookie pins a client to its
// target, and a client without it is spread by the algorithm.
func TestStickyCookie(t *testing.T) {
	mk := func(name string) *backend {
		return newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	a, b := mk("a"), mk("b")
	cfg := baseConfig(a.addr, b.addr)
	cfg.Pools[0].Sticky = pool.Sticky{Cookie: "shoal_pin", Secret: []byte("0123456789abcdef0123")}
	lb := start(t, cfg)
	c := client(t)
	resp, first := get(t, c, lb.url+"/")
	var pin *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "shoal_pin" {
			pin = ck
		}
	}
	if pin == nil {
		t.Fatalf("no sticky cookie in %v", resp.Header)
	}
	for i := 0; i < 10; i++ {
		if _, body := get(t, c, lb.url+"/", "Cookie", "shoal_pin="+pin.Value); body != first {
			t.Fatalf("pinned client moved from %s to %s", first, body)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		_, body := get(t, c, lb.url+"/")
		seen[body] = true
	}
	if len(seen) != 2 {
		t.Fatalf("unpinned clients all went to %v", seen)
	}
	if f := lb.listeners["web"].fast; f != nil && f.requests.Load() != 21 {
		t.Errorf("fast path served %d of 21 requests to a sticky pool", f.requests.Load())
	}
}
