package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// epochNode is a balancer node's following side on a real, running
// lb.Balancer, fed pages by the test.
type epochNode struct {
	f    *lbFollower
	addr string // the balancer's listener
}

func startEpochNode(t *testing.T) *epochNode {
	t.Helper()
	log := testLogger(t)
	b, err := lb.New(lb.Config{Listeners: []lb.Listener{{Name: "http", Addr: "127.0.0.1:0"}}, Logger: log})
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
			t.Errorf("balancer run: %v", err)
		}
	})
	f := &lbFollower{log: log, state: filepath.Join(t.TempDir(), LBStateFile), b: b, cfg: normalLBConfig(api.LBConfig{})}
	return &epochNode{f: f, addr: b.Addr("http").String()}
}

// healthyTargets returns how many of the pool's targets are healthy.
func (n *epochNode) healthyTargets(name string) int {
	bp, ok := n.f.b.Pool(name)
	if !ok {
		return 0
	}
	c := 0
	for _, ts := range bp.Status().Targets {
		if ts.State == pool.StateHealthy.String() {
			c++
		}
	}
	return c
}

func (n *epochNode) apply(t *testing.T, p api.LBConfigPage) {
	t.Helper()
	if _, err := n.f.applyPage("https://s.test", p); err != nil {
		t.Fatalf("apply page (epoch %s, version %d): %v", p.Epoch, p.Version, err)
	}
}

// webConfig is one route to pool web with the targets addrs, each with
// the server's verdict healthy.
func webConfig(addrs []string, healthy bool, drainMS int64, check *api.LBHealth) *api.LBConfig {
	p := api.LBPool{Name: "web", Algorithm: "round_robin", DrainTimeoutMS: drainMS, Health: check}
	for _, a := range addrs {
		p.Targets = append(p.Targets, api.LBTarget{Addr: a, Weight: 1, State: api.LBInService, Healthy: healthy})
	}
	return &api.LBConfig{Routes: []api.LBRoute{{Name: "web", PathPrefix: "/", Pool: "web"}}, Pools: []api.LBPool{p}}
}

// TestLBNodeNewEpochKeepsTargets: a new leader's first snapshot (a new
// epoch) lists the same targets with its verdicts unknown (not healthy:
// its checks have not run) and, in some cases, pool settings that make
// the node rebuild the pool or stop its check. The node keeps serving
// every target it served: no GET through it fails while it applies the
// snapshot, and the pool never has no healthy target. The new epoch's
// later changes still apply (a target the server finds unhealthy leaves
// a pool without a check).
func TestLBNodeNewEpochKeepsTargets(t *testing.T) {
	var addrs []string
	for i := range 2 {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "up%d", i)
		}))
		t.Cleanup(up.Close)
		addrs = append(addrs, up.Listener.Addr().String())
	}
	// A check that needs two passes an hour apart: a target the node
	// takes as awaiting its check stays out of service for the test.
	check := &api.LBHealth{Path: "/", IntervalMS: time.Hour.Milliseconds(), TimeoutMS: 1000, HealthyThreshold: 2, UnhealthyThreshold: 2}
	cases := []struct {
		name        string
		first, next *api.LBConfig
	}{
		{"same settings", webConfig(addrs, true, 5000, check), webConfig(addrs, false, 5000, check)},
		{"settings changed: the pool is rebuilt", webConfig(addrs, true, 5000, check), webConfig(addrs, false, 7000, check)},
		{"no check yet on the new leader", webConfig(addrs, true, 5000, check), webConfig(addrs, false, 5000, nil)},
		{"pool without a check", webConfig(addrs, true, 5000, nil), webConfig(addrs, false, 5000, nil)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testenv.Context(t, time.Minute)
			n := startEpochNode(t)
			n.apply(t, api.LBConfigPage{Epoch: "a", Version: 7, Snapshot: tc.first})
			if got := n.healthyTargets("web"); got != 2 {
				t.Fatalf("after the first snapshot: %d healthy targets, want 2", got)
			}
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			get := func() error {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.addr+"/", nil)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("GET: %s", resp.Status)
				}
				return nil
			}
			if err := get(); err != nil {
				t.Fatalf("before the new epoch: %v", err)
			}

			// GETs all along while the new epoch's snapshot is applied.
			var failed, answered atomic.Int64
			var firstErr atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20000 {
					select {
					case <-stop:
						return
					default:
					}
					if err := get(); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					} else {
						answered.Add(1)
					}
				}
			}()
			// Let some GETs through before the snapshot.
			if err := testenv.WaitFor(ctx, func() error {
				if answered.Load() < 5 {
					return fmt.Errorf("%d GETs answered", answered.Load())
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			n.apply(t, api.LBConfigPage{Epoch: "b", Version: 1, Snapshot: tc.next})
			healthyAfter := n.healthyTargets("web")
			seen := answered.Load()
			if err := testenv.WaitFor(ctx, func() error {
				if answered.Load() < seen+5 {
					return fmt.Errorf("%d GETs answered after the snapshot", answered.Load()-seen)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
			close(stop)
			wg.Wait()
			if healthyAfter != 2 {
				t.Errorf("after the new epoch's snapshot: %d healthy targets, want the 2 the node served", healthyAfter)
			}
			if failed.Load() > 0 {
				t.Errorf("%d of %d GETs failed across the new epoch's snapshot; first: %v", failed.Load(), failed.Load()+answered.Load(), firstErr.Load())
			}

			if tc.next.Pools[0].Health != nil {
				return
			}
			// The new leader's own verdict, a change of this epoch, applies.
			down := api.LBTarget{Addr: addrs[0], Weight: 1, State: api.LBInService, Healthy: false}
			n.apply(t, api.LBConfigPage{Epoch: "b", Version: 2, Changes: []api.LBChange{{Version: 2, Kind: api.LBTargetSet, PoolName: "web", Target: &down}}})
			if got := n.healthyTargets("web"); got != 1 {
				t.Errorf("after the new leader found %s unhealthy: %d healthy targets, want 1", addrs[0], got)
			}
		})
	}
}
