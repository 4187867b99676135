package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// stickyHit is one response seen by a sticky client.
type stickyHit struct {
	instance  string
	setCookie bool // the response (re-)pinned the client
	err       string
}

// TestDeployRepinsStickyClient runs a client that holds the balancer's
// sticky cookie through a deploy: it stays on its instance until the
// deploy drains it, then gets a new cookie with the response that lands
// on another instance, ends pinned to an instance of the new release, and
// no request fails.
func TestDeployRepinsStickyClient(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 2, 4)
	editYAML(t, dir, func(doc map[string]any) {
		doc["deploy"] = map[string]any{"batch_timeout": "30s", "max_surge": "1"}
		b := doc["balancer"].(map[string]any)
		b["sticky"] = map[string]any{"cookie": "shoal_sticky", "ttl": "1h"}
	})
	up := startUp(t, bin, dir)
	waitStatus(t, up.client, "v1 serving", onReleaseOnly(1, 2))

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}
	get := func(ctx context.Context) stickyHit {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, up.lbURL+"/api/echo", strings.NewReader("hi"))
		if err != nil {
			return stickyHit{err: err.Error()}
		}
		resp, err := hc.Do(req)
		if err != nil {
			return stickyHit{err: err.Error()}
		}
		defer resp.Body.Close()
		var body struct {
			Instance string `json:"instance"`
		}
		if resp.StatusCode != http.StatusOK {
			return stickyHit{err: resp.Status}
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return stickyHit{err: err.Error()}
		}
		h := stickyHit{instance: body.Instance}
		for _, c := range resp.Cookies() {
			h.setCookie = h.setCookie || c.Name == "shoal_sticky"
		}
		return h
	}

	ctx := testenv.Context(t, 90*time.Second)
	first := get(ctx)
	if first.err != "" || !first.setCookie {
		t.Fatalf("first request: %+v, want a pin", first)
	}
	for range 20 {
		if h := get(ctx); h.err != "" || h.instance != first.instance || h.setCookie {
			t.Fatalf("pinned client before the deploy: %+v, want %s without a new cookie", h, first.instance)
		}
	}

	// The client keeps going through the whole deploy.
	loadCtx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	var hits []stickyHit
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 200000 && loadCtx.Err() == nil; i++ {
			h := get(loadCtx)
			if loadCtx.Err() != nil {
				return
			}
			mu.Lock()
			hits = append(hits, h)
			mu.Unlock()
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })

	editYAML(t, dir, func(doc map[string]any) {
		doc["run"].(map[string]any)["env"].(map[string]any)["FEATURE"] = "on"
	})
	if code, out := runShoal(t, bin, dir, "deploy"); code != 0 || !strings.Contains(out, "v2 serves") {
		t.Fatalf("shoal deploy: exit %d\n%s", code, out)
	}
	st := waitStatus(t, up.client, "v2 serving", onReleaseOnly(2, 2))
	v2 := map[string]bool{}
	for _, in := range st.Instances {
		v2[in.ID] = true
	}
	// Let the client make a few requests on the new release.
	mu.Lock()
	n := len(hits)
	mu.Unlock()
	err = testenv.WaitFor(ctx, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(hits) < n+20 {
			return fmt.Errorf("%d requests since the deploy", len(hits)-n)
		}
		return nil
	})
	stop()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	prev, moves := first.instance, 0
	for i, h := range hits {
		if h.err != "" {
			t.Fatalf("request %d failed: %s", i, h.err)
		}
		if h.instance != prev {
			moves++
			if !h.setCookie {
				t.Errorf("request %d moved from %s to %s without a new cookie", i, prev, h.instance)
			}
			prev = h.instance
		}
	}
	last := hits[len(hits)-1].instance
	if moves == 0 || !v2[last] {
		t.Fatalf("sticky client moved %d times and ends on %s; want it re-pinned to a v2 instance %v", moves, last, v2)
	}
	for _, h := range hits[n:] {
		if h.instance != last {
			t.Errorf("after the deploy the client hops between %s and %s", h.instance, last)
			break
		}
	}
	t.Logf("%d requests, %d re-pins, from %s to %s", len(hits), moves, first.instance, last)
}
