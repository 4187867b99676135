// Command fleet measures Shoal's fleet in a lab of network namespaces
// (testenv.Lab, so it needs root): `shoal server` on the lab's bridge and
// three agents, h1 and h2 in zone a and h3 in zone b, running
// examples/goapp with 6 instances. Under a constant GET load through the
// server's balancer (from inside the lab) it measures deploys (the wall
// time of `shoal deploy`, the CLI's, for an env change that replaces all
// 6 instances on the 3 hosts, and the requests that failed meanwhile) and
// host losses: the link of the host with the most instances is cut
// (testenv.Lab.Cut: packets dropped, processes untouched), and it reports
// the time from the cut until none of the host's instances is in service,
// until 6 serve again on the other hosts, and the requests that failed;
// then the link is restored and it reports the time until the host's
// stale instances are stopped and it is ready again.
//
// Run it as root:
//
//	go build -o /tmp/shoal ./cmd/shoal
//	go run ./bench/fleet -shoal /tmp/shoal -n 10 -deploys 5
//
// The app folder is copied to a temp dir and its shoal.yaml tuned as the
// fleet test does (e2e/fleet_helpers_test.go, goApp): health every 500ms,
// 2 failures to leave, max_replacing 3, 0.25 CPU and 64MiB per instance,
// drain_timeout 35s (longer than the balancer's 30s try timeout, so GETs
// stuck on a lost host are retried rather than cut at the drain deadline).
// The server keeps its defaults (heartbeat 1s, lost after 5s).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/bench/internal/benchkit"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func main() {
	shoal := flag.String("shoal", "shoal", "the shoal `binary`")
	app := flag.String("app", "examples/goapp", "example app `folder`")
	n := flag.Int("n", 10, "host losses")
	deploys := flag.Int("deploys", 5, "deploys")
	workers := flag.Int("c", 4, "GET loops of the load")
	serverLog := flag.String("server-log", "", "write the server's output to this `file` at the end")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "fleet: the lab needs root (network and mount namespaces)")
		os.Exit(2)
	}
	if err := run(ctx, *shoal, *app, *n, *deploys, *workers, *serverLog); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

var zones = map[string]string{"h1": "a", "h2": "a", "h3": "b"}

// bench is the running fleet.
type bench struct {
	bin    string
	lab    *testenv.Lab
	server *testenv.Server
	srvDir string
	app    string
}

func run(ctx context.Context, bin, src string, losses, deploys, workers int, serverLog string) (err error) {
	lab, err := testenv.OpenLab(ctx, "h1", "h2", "h3")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, lab.Close()) }()
	b := &bench{bin: bin, lab: lab}
	if b.srvDir, err = os.MkdirTemp("", "shoal-bench-fleet-server-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.srvDir)
	if err := os.WriteFile(filepath.Join(b.srvDir, "server.yaml"), []byte(testenv.LabServerConfig()), 0o600); err != nil {
		return err
	}
	cmd := lab.Command("", bin, "server", "-c", filepath.Join(b.srvDir, "server.yaml"))
	cmd.Dir = b.srvDir
	if b.server, err = testenv.StartServer(ctx, cmd, filepath.Join(b.srvDir, "data")); err != nil {
		return err
	}
	defer func() {
		b.server.Close()
		if serverLog != "" {
			err = errors.Join(err, os.WriteFile(serverLog, []byte(b.server.Output()), 0o644))
		}
	}()

	for _, h := range []string{"h1", "h2", "h3"} {
		p, dir, err := b.startAgent(ctx, h)
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		defer p.Close()
	}
	if err := b.waitHosts(ctx, func(hs map[string]api.HostStatus) error {
		for h := range zones {
			if hs[h].State != api.HostReady {
				return fmt.Errorf("host %s is %q", h, hs[h].State)
			}
		}
		return nil
	}); err != nil {
		return err
	}

	b.app, err = benchkit.PrepareApp(src, "shoal-bench-fleet-", func(c benchkit.AppConfig) {
		delete(c, "admin")
		c["health"] = map[string]any{"path": "/healthz", "interval": "500ms", "timeout": "400ms",
			"healthy_threshold": 1, "unhealthy_threshold": 2, "grace": "20s"}
		c["group"] = map[string]any{"min": 1, "desired": 6, "max": 8, "max_replacing": 3}
		run := c.Section("run")
		run["cpu"], run["memory"], run["stop_timeout"] = 0.25, "64MiB", "3s"
		c["balancer"] = map[string]any{"algorithm": "p2c", "drain_timeout": "35s"}
	})
	if err != nil {
		return err
	}
	defer os.RemoveAll(b.app)
	start := time.Now()
	if out, err := b.shoal(ctx, b.app, "deploy"); err != nil {
		return fmt.Errorf("first deploy: %w\n%s", err, out)
	}
	first := time.Since(start)
	if _, err := b.waitServing(ctx); err != nil {
		return err
	}
	fmt.Printf("first deploy (build, upload, 6 instances from zero on 3 hosts): %.2fs\n", first.Seconds())

	// Deploys under load.
	var took []time.Duration
	ld := startLoad(ctx, lab, b.server.LBURL+"/", workers)
	for i := range deploys {
		if err := benchkit.EditConfig(b.app, func(c benchkit.AppConfig) { c.SetEnv("BENCH_ROUND", strconv.Itoa(i+1)) }); err != nil {
			ld.stop()
			return err
		}
		start := time.Now()
		if out, err := b.shoal(ctx, b.app, "deploy"); err != nil {
			ld.stop()
			return fmt.Errorf("deploy %d: %w\n%s", i+1, err, out)
		}
		took = append(took, time.Since(start))
		if _, err := b.waitServing(ctx); err != nil {
			ld.stop()
			return err
		}
	}
	ld.stop()
	fmt.Printf("deploys: %d (an env change: all 6 instances replaced on 3 hosts), %d GETs by %d loops, %d failed, slowest %v\n",
		deploys, ld.tally.OK()+ld.tally.Failed(), workers, ld.tally.Failed(), ld.slowest().Round(time.Millisecond))
	for _, f := range ld.tally.Failures() {
		fmt.Printf("    failed: %s\n", f)
	}
	row("deploy wall time", took)

	// Host losses under load.
	var out, back, healed []time.Duration
	var failed, total int64
	slowest := time.Duration(0)
	for r := range losses {
		st, err := b.waitServing(ctx)
		if err != nil {
			return err
		}
		victim := busiest(st)
		ld := startLoad(ctx, lab, b.server.LBURL+"/", workers)
		cut := time.Now()
		if err := lab.Cut(ctx, victim); err != nil {
			ld.stop()
			return err
		}
		var tOut time.Time
		err = b.waitStatus(ctx, func(st api.Status) error {
			if count(st, victim) > 0 {
				return fmt.Errorf("%d in service on %s", count(st, victim), victim)
			}
			if tOut.IsZero() {
				tOut = time.Now()
			}
			if n := count(st, ""); n != 6 {
				return fmt.Errorf("%d in service", n)
			}
			return nil
		})
		tBack := time.Now()
		if err == nil {
			// Keep the load on a moment after, for requests still in flight.
			err = sleep(ctx, time.Second)
		}
		ld.stop()
		if err != nil {
			return fmt.Errorf("round %d, cut of %s: %w", r+1, victim, err)
		}
		out = append(out, tOut.Sub(cut))
		back = append(back, tBack.Sub(cut))
		failed += ld.tally.Failed()
		total += ld.tally.OK() + ld.tally.Failed()
		slowest = max(slowest, ld.slowest())
		restored := time.Now()
		if err := lab.Restore(ctx, victim); err != nil {
			return err
		}
		if err := b.waitHosts(ctx, func(hs map[string]api.HostStatus) error {
			if h := hs[victim]; h.State != api.HostReady || h.Instances != 0 {
				return fmt.Errorf("%s: %s with %d instances", victim, h.State, h.Instances)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("round %d, restore of %s: %w", r+1, victim, err)
		}
		healed = append(healed, time.Since(restored))
		fmt.Printf("  round %d: cut %s: out %v, 6 serving elsewhere %v, %d of %d GETs failed, slowest %v\n", r+1, victim,
			out[r].Round(time.Millisecond), back[r].Round(time.Millisecond), ld.tally.Failed(), ld.tally.OK()+ld.tally.Failed(),
			ld.slowest().Round(time.Millisecond))
		for _, f := range ld.tally.Failures() {
			fmt.Printf("    failed: %s (cut at %s)\n", f, cut.Format("15:04:05.000"))
		}
	}
	fmt.Printf("host losses: %d, %d GETs by %d loops, %d failed, slowest %v\n", losses, total, workers, failed, slowest.Round(time.Millisecond))
	row("cut -> its instances out of service", out)
	row("cut -> 6 in service on the other hosts", back)
	row("link back -> stale stopped, host ready", healed)
	return nil
}

// startAgent writes host's agent.yaml with a token from `shoal
// join-token` and starts the agent on it.
func (b *bench) startAgent(ctx context.Context, host string) (*testenv.Process, string, error) {
	tok, err := b.shoal(ctx, b.srvDir, "join-token")
	if err != nil {
		return nil, "", fmt.Errorf("join-token: %w\n%s", err, tok)
	}
	dir, err := os.MkdirTemp("", "shoal-bench-fleet-"+host+"-")
	if err != nil {
		return nil, "", err
	}
	cfg := testenv.LabAgentConfig(b.server.FleetURL, b.lab.Host(host), zones[host])
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, dir, err
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), bytes.TrimSpace(tok), 0o600); err != nil {
		return nil, dir, err
	}
	cmd := b.lab.Command(host, b.bin, "agent", "-c", filepath.Join(dir, "agent.yaml"))
	cmd.Dir = dir
	p, err := testenv.StartProcess(cmd)
	return p, dir, err
}

// shoal runs a client verb in the lab from dir and returns its stdout
// (stderr too on failure).
func (b *bench) shoal(ctx context.Context, dir string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := b.lab.CommandContext(ctx, "", b.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SHOAL_ADMIN_URL="+b.server.AdminURL, "SHOAL_TOKEN="+b.server.Token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// waitHosts polls `shoal hosts -o json` (100 ms, at most 2 minutes)
// until ok accepts it.
func (b *bench) waitHosts(ctx context.Context, ok func(map[string]api.HostStatus) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return poll(ctx, func() error {
		out, err := b.shoal(ctx, b.srvDir, "hosts", "-o", "json")
		if err != nil {
			return fmt.Errorf("shoal hosts: %w: %s", err, out)
		}
		var list []api.HostStatus
		if err := json.Unmarshal(out, &list); err != nil {
			return err
		}
		hs := map[string]api.HostStatus{}
		for _, h := range list {
			hs[h.Name] = h
		}
		return ok(hs)
	})
}

// waitStatus polls `shoal status -o json` (as fast as it answers, at
// most 2 minutes) until ok accepts it.
func (b *bench) waitStatus(ctx context.Context, ok func(api.Status) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return poll(ctx, func() error {
		out, err := b.shoal(ctx, b.app, "status", "-o", "json")
		if err != nil {
			return fmt.Errorf("shoal status: %w: %s", err, out)
		}
		var st api.Status
		if err := json.Unmarshal(out, &st); err != nil {
			return err
		}
		return ok(st)
	})
}

// waitServing waits until 6 instances are in service and no other is
// live (pending, starting, unhealthy, draining), and returns that status.
func (b *bench) waitServing(ctx context.Context) (api.Status, error) {
	var last api.Status
	err := b.waitStatus(ctx, func(st api.Status) error {
		last = st
		for _, in := range st.Instances {
			switch in.State {
			case api.InService, api.Stopped, api.Failed:
			default:
				return fmt.Errorf("%s is %s", in.ID, in.State)
			}
		}
		if n := count(st, ""); n != 6 {
			return fmt.Errorf("%d in service", n)
		}
		return nil
	})
	return last, err
}

// hostOf is the lab host (h1...) an instance listens on.
func hostOf(in api.InstanceStatus) string {
	ip, _, err := net.SplitHostPort(in.Addr)
	if err != nil {
		return ""
	}
	for i, h := range []string{"h1", "h2", "h3"} {
		if ip == fmt.Sprintf("10.77.0.%d", 11+i) {
			return h
		}
	}
	return ""
}

// count is the number of instances in service on host ("": anywhere).
func count(st api.Status, host string) int {
	n := 0
	for _, in := range st.Instances {
		if in.State == api.InService && (host == "" || hostOf(in) == host) {
			n++
		}
	}
	return n
}

// busiest is the host with the most instances in service (ties: name).
func busiest(st api.Status) string {
	best, most := "h1", -1
	for _, h := range []string{"h1", "h2", "h3"} {
		if n := count(st, h); n > most {
			best, most = h, n
		}
	}
	return best
}

func poll(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func row(name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	benchkit.Table{NameWidth: 42, NumWidth: 8}.Row(name, ds)
}

// load is GET loops through the balancer from inside the lab; a request
// may take 45 s (longer than the balancer's try timeout and its retry).
// stop lets the requests in flight finish, so each is counted.
type load struct {
	quit  chan struct{}
	wg    sync.WaitGroup
	tr    *http.Transport
	tally benchkit.Tally

	mu    sync.Mutex
	times []time.Duration
}

func startLoad(ctx context.Context, lab *testenv.Lab, url string, workers int) *load {
	ld := &load{quit: make(chan struct{}), tr: lab.Transport("")}
	hc := &http.Client{Transport: ld.tr, Timeout: 45 * time.Second}
	for range workers {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			for ctx.Err() == nil {
				select {
				case <-ld.quit:
					return
				default:
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					return
				}
				start := time.Now()
				ld.tally.Send(hc, req)
				ld.mu.Lock()
				ld.times = append(ld.times, time.Since(start))
				ld.mu.Unlock()
			}
		}()
	}
	return ld
}

func (ld *load) stop() {
	close(ld.quit)
	ld.wg.Wait()
	ld.tr.CloseIdleConnections()
}

func (ld *load) slowest() time.Duration {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if len(ld.times) == 0 {
		return 0
	}
	return slices.Max(ld.times)
}
