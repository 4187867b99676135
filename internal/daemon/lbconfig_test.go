package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/health"
	"github.com/shoal-dev/shoal/internal/lb"
	"github.com/shoal-dev/shoal/internal/pool"
)

// lbConfigs is a sequence of configurations a server goes through.
func lbConfigs() []api.LBConfig {
	web := api.LBPool{Name: "web", Algorithm: "round_robin", DrainTimeoutMS: 1000, Retries: 2,
		Sticky: &api.LBSticky{Cookie: "pin", Secret: []byte("0123456789abcdef0123")},
		Health: &api.LBHealth{Path: "/up", IntervalMS: 200, TimeoutMS: 100, HealthyThreshold: 1, UnhealthyThreshold: 3, Statuses: [][2]int{{200, 399}}}}
	apiPool := api.LBPool{Name: "api", Algorithm: "p2c", Protocol: "h2c"}
	route := func(name, host, pool string) api.LBRoute {
		return api.LBRoute{Name: name, Host: host, PathPrefix: "/", Pool: pool}
	}
	tgt := func(addr string, st api.LBTargetState, healthy bool) api.LBTarget {
		return api.LBTarget{Addr: addr, Weight: 1, State: st, Healthy: healthy}
	}
	with := func(p api.LBPool, ts ...api.LBTarget) api.LBPool {
		p.Targets = append([]api.LBTarget{}, ts...)
		return p
	}
	web2 := web
	web2.SlowStartMS = 5000
	cert1 := []api.LBCertificate{{Names: []string{"web.test"}, CertPEM: "chain 1", KeyPEM: "key 1"}}
	cert2 := []api.LBCertificate{{Names: []string{"web.test"}, CertPEM: "chain 2", KeyPEM: "key 2"},
		{Names: []string{"api.test"}, CertPEM: "chain 3", KeyPEM: "key 3"}}
	return []api.LBConfig{
		normalLBConfig(api.LBConfig{}),
		{Routes: []api.LBRoute{route("web", "web.test", "web")}, Pools: []api.LBPool{with(web)}},
		{Routes: []api.LBRoute{route("web", "web.test", "web")}, Pools: []api.LBPool{with(web, tgt("10.0.0.1:1", api.LBInService, false))}},
		{Routes: []api.LBRoute{route("api", "", "api"), route("web", "web.test", "web")},
			Pools: []api.LBPool{with(apiPool, tgt("10.0.0.3:1", api.LBInService, true)),
				with(web, tgt("10.0.0.1:1", api.LBInService, true), tgt("10.0.0.2:1", api.LBInService, false))},
			Certificates: cert1, Challenges: []api.LBChallenge{{Token: "a", KeyAuth: "a.x"}, {Token: "b", KeyAuth: "b.x"}}},
		{Routes: []api.LBRoute{route("api", "", "api"), route("web", "web.test", "web")},
			Pools: []api.LBPool{with(apiPool, tgt("10.0.0.3:1", api.LBInService, true)),
				with(web2, tgt("10.0.0.1:1", api.LBDraining, true), tgt("10.0.0.2:1", api.LBInService, true))},
			Certificates: cert2},
		{Routes: []api.LBRoute{route("web", "web.test", "web")}, Pools: []api.LBPool{with(web2, tgt("10.0.0.2:1", api.LBInService, true))}},
		normalLBConfig(api.LBConfig{}),
	}
}

// TestLBConfigDiffApply: applying diff(a, b) to a gives b, for every pair
// of configurations; no change for equal ones; a change the
// configuration cannot take leaves it as it was.
func TestLBConfigDiffApply(t *testing.T) {
	cs := lbConfigs()
	for i, a := range cs {
		for j, b := range cs {
			got := a
			for _, ch := range diffLBConfig(a, b) {
				if err := applyLBChange(&got, ch); err != nil {
					t.Fatalf("%d -> %d: %+v: %v", i, j, ch, err)
				}
			}
			if got = normalLBConfig(got); !reflect.DeepEqual(got, b) {
				t.Fatalf("%d -> %d: got %+v, want %+v", i, j, got, b)
			}
			if i == j && len(diffLBConfig(a, b)) != 0 {
				t.Fatalf("%d: changes between equal configurations: %+v", i, diffLBConfig(a, b))
			}
		}
	}
	c := cs[1]
	for _, ch := range []api.LBChange{
		{Version: 7, Kind: api.LBTargetSet, PoolName: "nope", Target: &api.LBTarget{Addr: "x:1"}},
		{Version: 8, Kind: "frobnicate"},
		{Version: 9, Kind: api.LBPoolSet},
	} {
		before := c
		if err := applyLBChange(&c, ch); err == nil || !strings.Contains(err.Error(), "change ") {
			t.Fatalf("%+v applied: %v", ch, err)
		}
		if !reflect.DeepEqual(c, before) {
			t.Fatalf("a refused change altered the configuration")
		}
	}
}

// TestLBConfigRoundTrip: the balancer types a node builds from the
// followed configuration give the same configuration back.
func TestLBConfigRoundTrip(t *testing.T) {
	for i, c := range lbConfigs() {
		cfg := lb.Config{Routes: lbRoutesOf(c)}
		checks := map[string]*api.LBHealth{}
		for _, p := range c.Pools {
			pc, err := lbPoolConfigOf(p)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Pools = append(cfg.Pools, pc)
			checks[p.Name] = p.Health
		}
		targets := func(name string) []pool.TargetStatus {
			for _, p := range c.Pools {
				if p.Name != name {
					continue
				}
				var out []pool.TargetStatus
				for _, tg := range p.Targets {
					st := pool.StateUnhealthy.String()
					switch {
					case tg.State == api.LBDraining:
						st = pool.StateDraining.String()
					case tg.Healthy:
						st = pool.StateHealthy.String()
					}
					out = append(out, pool.TargetStatus{Addr: tg.Addr, Weight: tg.Weight, State: st})
				}
				return out
			}
			return nil
		}
		got := lbConfigOf(cfg, targets, func(name string) *health.Spec {
			pc, _ := lbPoolConfigOf(api.LBPool{Name: name, Algorithm: "round_robin", Health: checks[name]})
			return pc.Health
		})
		// The certificates and challenges go through the balancer's own
		// types (lbStream.derive sets them).
		got.Certificates = lbCertsOf(managedCertsOf(c.Certificates))
		got.Challenges = lbChallengesOf(challengesOf(c.Challenges))
		// Draining targets keep the server's verdict only as healthy.
		want := c
		for pi := range want.Pools {
			for ti, tg := range want.Pools[pi].Targets {
				if tg.State == api.LBDraining {
					want.Pools[pi].Targets = append([]api.LBTarget(nil), want.Pools[pi].Targets...)
					want.Pools[pi].Targets[ti].Healthy = false
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%d: got %+v, want %+v", i, got, want)
		}
	}
}

// TestLBStreamPages: the stream numbers the changes, answers the changes
// after a known version, a snapshot to another epoch, a version ahead of
// it or one behind what it keeps, and waits at the latest.
func TestLBStreamPages(t *testing.T) {
	s := &lbStream{epoch: "e1", wake: make(chan struct{}), done: make(chan struct{}), log: slog.New(slog.DiscardHandler),
		cur: lbConfigs()[0]}
	cs := lbConfigs()
	for _, c := range cs[1:4] {
		s.update(c)
	}
	if s.version == 0 || s.kept[0].Version != 1 || s.kept[len(s.kept)-1].Version != s.version {
		t.Fatalf("versions: %d, log %+v", s.version, s.kept)
	}
	p, _, ok := s.page("e1", 1)
	if !ok || p.Snapshot != nil || len(p.Changes) != int(s.version-1) || p.Changes[0].Version != 2 || p.Version != s.version {
		t.Fatalf("changes after 1: %+v", p)
	}
	got := cs[0]
	for _, ch := range s.kept {
		if err := applyLBChange(&got, ch); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(normalLBConfig(got), cs[3]) {
		t.Fatalf("the changes lead to %+v", got)
	}
	for _, q := range []struct {
		epoch string
		after uint64
	}{{"", 0}, {"e0", 1}, {"e1", s.version + 1}} {
		if p, _, ok := s.page(q.epoch, q.after); !ok || p.Snapshot == nil || !reflect.DeepEqual(*p.Snapshot, cs[3]) {
			t.Fatalf("page(%q, %d) = %+v, want a snapshot", q.epoch, q.after, p)
		}
	}
	_, wait, ok := s.page("e1", s.version)
	if ok || wait == nil {
		t.Fatal("the latest version did not wait")
	}
	s.update(cs[4])
	select {
	case <-wait:
	default:
		t.Fatal("a new version did not wake the waiters")
	}
	// Keep only lbStreamKeep changes: one behind those gets a snapshot.
	for i := 0; s.version < lbStreamKeep+20; i++ {
		s.update(cs[i%len(cs)])
	}
	oldest := s.kept[0].Version
	if p, _, _ := s.page("e1", oldest-2); p.Snapshot == nil {
		t.Fatalf("a node behind the kept changes got %d changes, want a snapshot", len(p.Changes))
	}
	if p, _, _ := s.page("e1", oldest-1); p.Snapshot != nil || len(p.Changes) != lbStreamKeep {
		t.Fatalf("a node at the oldest kept change: snapshot %v, %d changes", p.Snapshot != nil, len(p.Changes))
	}
}

// TestLBStateDamagedRefused: a saved configuration loads back whole; a
// truncated, altered or foreign one is refused naming the file, and so is
// a node's start on it.
func TestLBStateDamagedRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LBStateFile)
	want := lbConfigs()[3]
	if err := saveLBState(path, "https://s:1", "e1", 9, want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v; want mode 0600", fi, err)
	}
	st, got, found, err := loadLBState(path)
	if err != nil || !found || st.Version != 9 || st.Epoch != "e1" || !reflect.DeepEqual(got, want) {
		t.Fatalf("load: %+v %+v %v %v", st, got, found, err)
	}
	good, _ := os.ReadFile(path)
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"altered":   []byte(strings.Replace(string(good), "10.0.0.3:1", "10.0.0.9:1", 1)),
		"empty":     {},
		"foreign":   []byte(`{"schema": 2}`),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, _, err := loadLBState(path)
		var de *DamagedStateError
		if !errors.As(err, &de) || de.Path != path || !strings.Contains(err.Error(), path) {
			t.Fatalf("%s: %v; want a *DamagedStateError naming %s", name, err, path)
		}
	}

	// A node does not start on a damaged file; it is left in place.
	nodeDir := t.TempDir()
	lbPath, file := nodeFile(t, nodeDir, "https://127.0.0.1:1", "n1")
	if err := os.MkdirAll(filepath.Join(nodeDir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(nodeDir, "data", LBStateFile)
	if err := os.WriteFile(state, good[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenLB(LBOptions{Path: lbPath, File: file})
	if err == nil {
		d.Close()
	}
	var de *DamagedStateError
	if !errors.As(err, &de) || de.Path != state {
		t.Fatalf("OpenLB on a damaged state: %v", err)
	}
	if b, _ := os.ReadFile(state); len(b) != 10 {
		t.Fatal("the damaged file was changed")
	}
}

// FuzzLBState: any file either loads into a configuration that saves and
// loads back the same, or is refused; never a panic.
func FuzzLBState(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.json")
	if err := saveLBState(seed, "https://s:1", "e", 3, lbConfigs()[4]); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(seed)
	f.Add(b)
	f.Add([]byte(`{"schema":1,"config":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), LBStateFile)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, cfg, found, err := loadLBState(path)
		if err != nil {
			return
		}
		if !found {
			t.Fatal("an existing file not found")
		}
		if err := saveLBState(path, st.Server, st.Epoch, st.Version, cfg); err != nil {
			t.Fatal(err)
		}
		_, again, _, err := loadLBState(path)
		if err != nil || !reflect.DeepEqual(again, cfg) {
			t.Fatalf("saved %+v, loaded %+v, %v", cfg, again, err)
		}
	})
}

// TestLBStreamDelivered: a version is delivered once every node that
// followed recently has asked for the changes after it; a node of another
// epoch counts as behind; the wait ends with ctx, naming the nodes behind.
func TestLBStreamDelivered(t *testing.T) {
	s := &lbStream{epoch: "e1", wake: make(chan struct{}), done: make(chan struct{}), log: slog.New(slog.DiscardHandler),
		cur: lbConfigs()[0], nodes: map[string]nodeMark{}, acked: make(chan struct{})}
	ctx := context.Background()
	if err := s.delivered(ctx, 5); err != nil {
		t.Fatalf("no node follows: %v", err)
	}
	s.mark("lb-1", "e1", "", 4)
	s.mark("lb-2", "e0", "", 9)
	done := make(chan error, 1)
	go func() { done <- s.delivered(ctx, 5) }()
	select {
	case err := <-done:
		t.Fatalf("delivered before the nodes asked: %v", err)
	default:
	}
	s.mark("lb-1", "e1", "", 5)
	select {
	case err := <-done:
		t.Fatalf("delivered while lb-2 follows another epoch: %v", err)
	default:
	}
	s.mark("lb-2", "e1", "", 6)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered after both nodes asked")
	}
	s.mark("lb-2", "e1", "", 6)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.delivered(cctx, 7); err == nil || !strings.Contains(err.Error(), "lb-1, lb-2") {
		t.Fatalf("delivered(7) = %v, want an error naming lb-1, lb-2", err)
	}
	s.mu.Lock()
	s.nodes["lb-1"] = nodeMark{after: 1, at: time.Now().Add(-lbNodeGone)}
	s.nodes["lb-2"] = nodeMark{after: 1, at: time.Now().Add(-lbNodeGone)}
	s.mu.Unlock()
	if err := s.delivered(ctx, 7); err != nil {
		t.Fatalf("nodes gone for %s still awaited: %v", lbNodeGone, err)
	}
}

// TestRouteHosts: the ACME hosts taken from the routes are their exact,
// fully qualified names, once each.
func TestRouteHosts(t *testing.T) {
	got := routeHosts([]lb.Route{{Host: "Web.Example.com"}, {Host: ""}, {Host: "*.example.com"}, {Host: "localhost"},
		{Host: "api.example.com"}, {Host: "web.example.com"}, {Host: "10.0.0.1"}})
	if strings.Join(got, ",") != "api.example.com,web.example.com" {
		t.Fatalf("routeHosts = %v", got)
	}
}
