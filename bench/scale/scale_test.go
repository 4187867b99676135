package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/store"
)

// TestMain runs a server's process of TestClusterProcesses (this test
// binary again, as the bench re-executes itself), or the tests.
func TestMain(m *testing.M) {
	if path := os.Getenv(serverEnv); path != "" {
		if err := runServer(path); err != nil {
			fmt.Fprintln(os.Stderr, "scale server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestSmallFleet runs the benchmark's scenario at a size the suite can
// afford (50 hosts in 5 zones, 5 apps of 100 instances) and checks that it
// is correct, never how fast: every instance comes into service through
// the real fleet, agents and controllers; the instances spread evenly
// over the hosts; a lost host's instances are replaced elsewhere and the
// apps return to their desired count; everything shuts down without a
// leaked goroutine (TestMain).
func TestSmallFleet(t *testing.T) {
	sc := scenario{Hosts: 50, Zones: 5, Apps: 5, PerApp: 100, MaxReplacing: 25,
		HealthInterval: time.Second, HeartbeatEvery: time.Second, LostAfter: 5 * time.Second,
		HostCPU: 8, HostMemory: 16 << 30,
		// The server's warnings, shown with the test's output when it
		// fails (or with -v).
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	// Five minutes: under -race on a loaded machine (load 30 on two
	// cores) health checks time out and instances are replaced during the
	// bring-up, which then took more than two.
	s, hosts, ctx, closeServer := bringUp(t, sc, 5*time.Minute, 8)
	// 500 instances over 50 hosts: placement spreads each app, so every
	// host runs 10 (each app's 100 over 50 hosts is 2 per host), unless
	// the load made churn: a host declared lost (its generation moved on:
	// nothing was placed on it meanwhile) or an instance replaced (a
	// health check that timed out three times), placed where there was
	// room then. The spread is checked when there was none.
	starts, running, _ := countInstances(hosts)
	churn := starts != int64(sc.Apps*sc.PerApp)
	for _, h := range s.hostStatus() {
		churn = churn || h.Generation != 0
	}
	if lo, hi := s.spread(); (lo != 10 || hi != 10) && !churn {
		t.Fatalf("instances per host range from %d to %d with no host lost and no instance replaced, want 10 on each", lo, hi)
	} else if churn {
		t.Logf("spread not checked: %d starts for %d instances, or a host was lost, under load (instances per host %d to %d)", starts, sc.Apps*sc.PerApp, lo, hi)
	}
	// With churn, the instances replaced may still be retiring (a
	// replacement is launched first), and a host declared lost runs its
	// stale ones until it answers again and they are stopped: wait for
	// them, within the test's time.
	if err := poll(ctx, 50*time.Millisecond, func() error {
		if _, running, _ = countInstances(hosts); running != int64(sc.Apps*sc.PerApp) && churn {
			return fmt.Errorf("the agents run %d instances, want %d", running, sc.Apps*sc.PerApp)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if running != int64(sc.Apps*sc.PerApp) {
		t.Fatalf("the agents run %d instances with no host lost and no instance replaced, want %d", running, sc.Apps*sc.PerApp)
	}

	lost, ids := s.busiestHost()
	hosts[lost].close()
	if err := s.waitHostState(ctx, lost, api.HostUnreachable); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 50*time.Millisecond, func() error { return s.serving(ids) }); err != nil {
		t.Fatal(err)
	}
	if on := s.fleet().InstancesOn(lost); len(on) != 0 {
		t.Fatalf("the lost host %s still has instances placed: %v", lost, on)
	}

	if err := closeServer(); err != nil {
		t.Fatal(err)
	}
	checkStoppedOrFenced(t, s, hosts, lost)
}

// checkStoppedOrFenced checks what a server alone left on the hosts that
// answer (all but lost) after its shutdown: its controllers stopped every
// instance they had; an instance still running must be one the fleet
// took from them because its host was declared lost (under load, a host
// whose heartbeats went unanswered), which the fleet stops when the host
// answers again, or, if the server ended first, hands over: the host's
// stored generation is above the instance's, so the next server's fleet
// stops it before it takes the host (fleet's generation fence).
func checkStoppedOrFenced(t *testing.T, s *serverSide, hosts map[string]*simHost, lost string) {
	t.Helper()
	st, err := store.Open(filepath.Join(s.replicas[0].dir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Hosts().List()
	if err != nil {
		t.Fatal(err)
	}
	gens := map[string]uint64{}
	for _, r := range recs {
		gens[r.Name] = r.Generation
	}
	fenced := 0
	for name, h := range hosts {
		if name == lost {
			continue
		}
		for _, in := range h.rt.List() {
			g, err := strconv.ParseUint(in.Labels[fleet.LabelGeneration], 10, 64)
			if err != nil || g >= gens[name] {
				t.Errorf("host %s (stored generation %d) still runs %s of generation %q after the server's shutdown: neither stopped nor fenced",
					name, gens[name], in.ID, in.Labels[fleet.LabelGeneration])
				continue
			}
			fenced++
		}
	}
	if fenced > 0 {
		t.Logf("%d instances left on hosts declared lost under load, fenced by their stored generation", fenced)
	}
}

// TestSmallCluster runs the scenario with the state held by a Raft
// cluster of three servers (cluster.go) at a size the suite can afford
// (12 hosts, 2 apps of 24 instances) and checks that it is correct, never
// how fast: every instance comes into service through the leader's fleet
// and controllers, whose writes reach every replica's store; a round of
// heartbeats writes no host record (nothing goes through the log); the
// leader's raft killed, another server is elected, adopts every instance
// and serves them all, none launched twice and none extra; everything shuts down
// without a leaked goroutine (TestMain).
func TestSmallCluster(t *testing.T) {
	sc := scenario{Servers: 3, ElectionTimeout: 3 * time.Second, Hosts: 12, Zones: 3, Apps: 2, PerApp: 24, MaxReplacing: 8,
		HealthInterval: time.Second, HeartbeatEvery: time.Second, LostAfter: 5 * time.Second,
		HostCPU: 8, HostMemory: 16 << 30}
	s, hosts, ctx, closeServer := bringUp(t, sc, 3*time.Minute, 4)
	total := sc.Apps * sc.PerApp
	starts, running, _ := countInstances(hosts)
	if running != int64(total) {
		t.Fatalf("the agents run %d instances, want %d", running, total)
	}
	// Every replica holds the apps' groups: the controllers' writes went
	// through the log.
	for _, r := range s.replicas {
		if err := poll(ctx, 20*time.Millisecond, func() error {
			groups, err := r.store.Groups()
			if err != nil {
				return err
			}
			n := 0
			for _, g := range groups {
				if g.Desired == sc.PerApp && g.Release > 0 {
					n++
				}
			}
			if n != sc.Apps {
				return fmt.Errorf("replica %s holds %d of %d apps with a release and desired %d", r.id, n, sc.Apps, sc.PerApp)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// A whole round of heartbeats, every host answering and no change of
	// leader meanwhile (one under load begins a term whose fleet records
	// the hosts again: then the round is begun again), writes no host
	// record.
	for round := 0; ; round++ {
		terms, puts, since := s.terms.Load(), s.hostPuts(), time.Now()
		if err := poll(ctx, 50*time.Millisecond, func() error {
			st := s.hostStatus()
			if len(st) != sc.Hosts {
				return fmt.Errorf("the leader's fleet lists %d of %d hosts", len(st), sc.Hosts)
			}
			for _, h := range st {
				if !h.LastHeartbeat.After(since) {
					return fmt.Errorf("host %s last answered a heartbeat at %s", h.Name, h.LastHeartbeat)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if s.terms.Load() != terms && round < 5 {
			continue
		}
		if n := s.hostPuts() - puts; n != 0 {
			t.Fatalf("a round of heartbeats wrote %d host records through the log, want none", n)
		}
		break
	}

	if err := poll(ctx, 20*time.Millisecond, func() error {
		if s.leader() == nil {
			return errors.New("no leader's term runs")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	killed, err := s.killLeader()
	if err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 20*time.Millisecond, func() error {
		if r := s.leader(); r == nil || r == killed {
			return fmt.Errorf("no term of a new leader since %s was killed", killed.id)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.waitAppsReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 50*time.Millisecond, func() error { return s.serving(nil) }); err != nil {
		t.Fatal(err)
	}
	// No instance was launched twice and none is extra. Launches are
	// logged, not checked: under load a health check that times out
	// three times makes a replacement, as it would without a failover.
	after, running, again := countInstances(hosts)
	if again != 0 || running != int64(total) {
		t.Fatalf("after the failover the agents started %d instances under an id started before and run %d, want none and %d", again, running, total)
	}
	t.Logf("instances launched during the failover: %d", after-starts)

	if err := closeServer(); err != nil {
		t.Fatal(err)
	}
}

// bringUp starts sc's server side and hosts (parallel at a time) and
// waits until every instance serves, within the returned context's time;
// cleanup closes the hosts, and the server side unless closeServer did.
func bringUp(t *testing.T, sc scenario, within time.Duration, parallel int) (*serverSide, map[string]*simHost, context.Context, func() error) {
	t.Helper()
	dir := t.TempDir()
	s, err := newServerSide(dir, sc, -1)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	closeServer := func() error {
		closed = true
		return s.close()
	}
	t.Cleanup(func() {
		if !closed {
			s.close()
		}
	})
	specs, err := prepareHosts(s.ca, sc, filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, hs := range specs {
		names = append(names, hs.Name)
	}
	if err := s.admit(names); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(cancel)
	hosts, err := startHosts(ctx, &manifest{Server: s.url, CPU: sc.HostCPU, Memory: sc.HostMemory, Hosts: specs}, parallel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeHosts(hosts) })
	if err := s.waitHostsReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.startApps(); err != nil {
		t.Fatal(err)
	}
	if err := s.waitAppsReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 50*time.Millisecond, func() error { return s.serving(nil) }); err != nil {
		t.Fatal(err)
	}
	return s, hosts, ctx, closeServer
}

// TestClusterProcesses runs the servers as the bench does (servers.go):
// three processes, each this test binary again holding one replica, at a
// size the suite can afford (12 hosts in this process reaching the
// leader's fleet port through the relay, 2 apps of 24 instances), and
// checks that it is correct, never how fast: every instance comes into
// service; scale writes through the leader are answered; the leader's
// process killed (SIGKILL), another server is elected, its term adopts
// every instance and serves them all, none launched twice and none extra;
// everything shuts down without a leaked goroutine (TestMain).
func TestClusterProcesses(t *testing.T) {
	sc := scenario{Servers: 3, ElectionTimeout: 3 * time.Second, Hosts: 12, Zones: 3, Apps: 2, PerApp: 24, MaxReplacing: 8,
		HealthInterval: time.Second, HeartbeatEvery: time.Second, LostAfter: 5 * time.Second,
		HostCPU: 8, HostMemory: 16 << 30}
	total := sc.Apps * sc.PerApp
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := prepareHosts(ca, sc, filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, hs := range specs {
		names = append(names, hs.Name)
	}
	ss, err := startServers(ctx, dir, sc, ca, names)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			ss.close()
		}
	})
	hosts, err := startHosts(ctx, &manifest{Server: ss.url, CPU: sc.HostCPU, Memory: sc.HostMemory, Hosts: specs}, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeHosts(hosts) })
	if err := ss.check(ctx, 50*time.Millisecond, "hosts"); err != nil {
		t.Fatal(err)
	}
	if err := ss.startApps(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"apps", "serving"} {
		if err := ss.check(ctx, 50*time.Millisecond, c); err != nil {
			t.Fatal(err)
		}
	}
	through, alone, _, err := ss.writeLatency(ctx, 4)
	if err != nil || len(through) != 4 || len(alone) != 4 {
		t.Fatalf("4 scale writes through the leader: %d answered, %d on the peer, %v", len(through), len(alone), err)
	}
	if _, running, _ := countInstances(hosts); running != int64(total) {
		t.Fatalf("the agents run %d instances, want %d", running, total)
	}

	killed := ss.leader()
	if killed == nil {
		t.Fatal("no server's term runs")
	}
	if err := ss.kill(killed); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 20*time.Millisecond, func() error {
		if p := ss.leader(); p == nil || p == killed {
			return fmt.Errorf("no term of a new leader since %s was killed", killed.id)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"apps", "serving"} {
		if err := ss.check(ctx, 50*time.Millisecond, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, running, again := countInstances(hosts); again != 0 || running != int64(total) {
		t.Fatalf("after the failover the agents started %d instances under an id started before and run %d, want none and %d", again, running, total)
	}
	closed = true
	if err := ss.close(); err != nil {
		t.Fatal(err)
	}
}
