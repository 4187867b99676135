package lb

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/pool"
)

// TestReloadUnderLoad: requests from several goroutines never fail while
// Reload swaps between configurations with different targets and routes.
func TestReloadUnderLoad(t *testing.T) {
	mk := func(name string) *backend {
		return newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	a, b := mk("a"), mk("b")
	cfgA := baseConfig(a.addr)
	cfgB := baseConfig(b.addr)
	cfgB.Routes = append(cfgB.Routes, Route{Name: "extra", PathPrefix: "/extra", Pool: "app"})
	cfgB.Pools[0].TryTimeout = 20 * time.Second // forces a new transport
	lb := start(t, cfgA)
	c := client(t)
	stop := make(chan struct{})
	var failures, total atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(lb.url + "/")
				total.Add(1)
				if err != nil {
					if failures.Add(1) < 3 {
						t.Logf("failed: %v", err)
					}
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || (string(body) != "a" && string(body) != "b") {
					if failures.Add(1) < 3 {
						t.Logf("failed: %d %q", resp.StatusCode, body)
					}
				}
			}
		}()
	}
	for i := 0; i < 40; i++ {
		cfg := cfgA
		if i%2 == 0 {
			cfg = cfgB
		}
		if err := lb.Reload(cfg); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		// Let some traffic through each configuration.
		n := total.Load()
		waitFor(t, 10*time.Second, "traffic", func() bool { return total.Load() >= n+10 })
	}
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during reloads", n, total.Load())
	}
}

func TestInvalidReloadKeepsOld(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "old") })
	lb := start(t, baseConfig(be.addr))
	bad := baseConfig("not-an-address")
	bad.Routes = append(bad.Routes, Route{Name: "r2", Pool: "missing"})
	err := lb.Reload(bad)
	if err == nil {
		t.Fatal("invalid reload accepted")
	}
	for _, want := range []string{"targets[0].addr", "unknown pool", "same host and path prefix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	resp, body := get(t, client(t), lb.url+"/")
	if resp.StatusCode != 200 || body != "old" {
		t.Fatalf("old config not serving: %d %q", resp.StatusCode, body)
	}
	// A listener that cannot bind rejects the reload too.
	clash := baseConfig(be.addr)
	clash.Listeners = append(clash.Listeners, Listener{Name: "clash", Addr: be.addr})
	if err := lb.Reload(clash); err == nil {
		t.Fatal("reload with an unbindable listener accepted")
	}
	if resp, _ := get(t, client(t), lb.url+"/"); resp.StatusCode != 200 {
		t.Fatal("old config not serving after bind failure")
	}
}

// TestReloadKeepsTargetState: a kept pool keeps its target objects, new
// targets are added, gone ones drained away, and listeners added and
// removed.
func TestReloadKeepsTargetState(t *testing.T) {
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") })
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	lb := start(t, baseConfig(a.addr))
	p, _ := lb.Pool("app")
	ta := p.Targets()[0]
	get(t, client(t), lb.url+"/")

	cfg := baseConfig(b.addr)
	cfg.Listeners = append(cfg.Listeners, Listener{Name: "second", Addr: "127.0.0.1:0"})
	if err := lb.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	p2, _ := lb.Pool("app")
	if p2 != p {
		t.Fatal("pool was rebuilt although its options did not change")
	}
	waitFor(t, 5*time.Second, "old target removed", func() bool {
		for _, x := range p.Targets() {
			if x == ta {
				return false
			}
		}
		return true
	})
	if lb.Addr("second") == nil {
		t.Fatal("new listener not bound")
	}
	resp, body := get(t, client(t), "http://"+lb.Addr("second").String()+"/")
	if resp.StatusCode != 200 || body != "b" {
		t.Fatalf("second listener: %d %q", resp.StatusCode, body)
	}
	if err := lb.Reload(baseConfig(b.addr)); err != nil {
		t.Fatal(err)
	}
	if lb.Addr("second") != nil {
		t.Fatal("removed listener still known")
	}
	st := lb.Status()
	if len(st.Pools) != 1 || len(st.Pools[0].Targets) != 1 || st.Pools[0].Targets[0].Addr != b.addr {
		t.Fatalf("status %+v", st.Pools)
	}
	_ = pool.StateHealthy
}
