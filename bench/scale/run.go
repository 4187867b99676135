package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// options are the command line's.
type options struct {
	sc         scenario
	procs      int // agents' processes
	writes     int // of each write latency measurement
	steady     time.Duration
	dir        string
	keep       bool
	cpuProfile string
	memProfile string
	upProfile  string // CPU profile of the bring-up
	mutexProf  string
	blockProf  string
	agentsProf string // prefix of the agents' processes' CPU profiles
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.IntVar(&o.sc.Servers, "servers", 1, "`servers` holding the state: 1 is one shoal server, more a Raft cluster in this process (cluster.go)")
	fs.DurationVar(&o.sc.ElectionTimeout, "election-timeout", time.Second, "the cluster's election_timeout (shoal server's default)")
	fs.IntVar(&o.writes, "writes", 200, "scale `writes` of each write latency measurement")
	fs.IntVar(&o.sc.Hosts, "hosts", 1000, "simulated `hosts`")
	fs.IntVar(&o.sc.Zones, "zones", 4, "`zones` the hosts are spread over")
	fs.IntVar(&o.sc.Apps, "apps", 20, "`apps`, one controller each")
	fs.IntVar(&o.sc.PerApp, "per", 500, "desired `instances` per app")
	fs.IntVar(&o.sc.MaxReplacing, "max-replacing", 100, "group.max_replacing of each app (launches at once)")
	fs.DurationVar(&o.sc.HealthInterval, "health", 2*time.Second, "health.interval of each app (the default)")
	fs.DurationVar(&o.sc.HeartbeatEvery, "heartbeat", time.Second, "the fleet's heartbeat period (the default)")
	fs.DurationVar(&o.sc.LostAfter, "lost-after", 5*time.Second, "the fleet's lost_after (the default)")
	fs.IntVar(&o.procs, "agent-procs", 4, "`processes` the simulated hosts are spread over (each holds a listener per instance: 10,000 need more descriptors than one process may open here)")
	fs.DurationVar(&o.steady, "steady", 60*time.Second, "how long steady state is measured")
	fs.StringVar(&o.dir, "dir", "", "working `folder` (default: a new temp folder, removed at the end)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working folder")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the server side's CPU profile of the steady state to `file`")
	fs.StringVar(&o.memProfile, "memprofile", "", "write the server side's heap profile at steady state to `file`")
	fs.StringVar(&o.agentsProf, "agentsprofile", "", "write each agents' process's CPU profile (whole run) to `prefix`.N")
	fs.StringVar(&o.upProfile, "upcpuprofile", "", "write the server side's CPU profile of the bring-up to `file`")
	fs.StringVar(&o.mutexProf, "mutexprofile", "", "write the server side's mutex contention profile (bring-up and steady state) to `file`")
	fs.StringVar(&o.blockProf, "blockprofile", "", "write the server side's blocking profile (bring-up and steady state; waits over 1 ms) to `file`")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.sc.Hosts < 1 || o.sc.Hosts > 40000 || o.sc.Zones < 1 || o.sc.Apps < 1 || o.sc.PerApp < 1 || o.sc.MaxReplacing < 1 || o.procs < 1 ||
		o.sc.Servers < 1 || o.sc.Servers > 7 || o.writes < 1 {
		return o, errors.New("-hosts (1-40000), -servers (1-7), -zones, -apps, -per, -max-replacing, -agent-procs and -writes must be positive")
	}
	o.sc.HostCPU, o.sc.HostMemory = 8, 16<<30
	o.sc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return o, nil
}

// agents is the child process that runs the simulated hosts.
type agents struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startAgents(ctx context.Context, manifestPath string) (*agents, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), agentsEnv+"="+manifestPath)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &agents{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		defer close(a.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			a.lines <- sc.Text()
		}
	}()
	return a, nil
}

// expect waits for a line with prefix from the agents.
func (a *agents) expect(ctx context.Context, prefix string) (string, error) {
	select {
	case l, ok := <-a.lines:
		if !ok {
			return "", fmt.Errorf("the agents' process ended (waiting for %q)", prefix)
		}
		if !strings.HasPrefix(l, prefix) {
			return "", fmt.Errorf("the agents' process said %q, want %q", l, prefix)
		}
		return l, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for %q from the agents: %w", prefix, ctx.Err())
	}
}

// stop closes the agents' stdin (they close every host and exit) and
// waits for the process.
func (a *agents) stop() error {
	a.stdin.Close()
	for range a.lines {
	}
	return a.cmd.Wait()
}

// sample is the server side's counters at one moment.
type sample struct {
	at       time.Time
	cpu      time.Duration // this process
	agentCPU time.Duration // the agents' process
	passes   hist
	events   uint64 // the store's last event number: state changes and other events
	index    uint64 // the leader's last applied raft log entry (cluster)
	hostPuts int64  // the fleet's host record writes, every replica
	terms    int64  // terms begun (a change of leader begins one)
}

func (s *serverSide) sample(procs []*agents) sample {
	sm := sample{at: time.Now(), cpu: cpuSelf()}
	for _, a := range procs {
		c, _ := cpuOf(a.cmd.Process.Pid)
		sm.agentCPU += c
	}
	sm.events, _ = s.leaderStore().LastEventSeq()
	if r := s.leader(); r != nil && r.node != nil {
		sm.index = r.node.AppliedIndex()
	}
	sm.hostPuts = s.hostPuts()
	sm.terms = s.terms.Load()
	s.mu.Lock()
	sm.passes = s.pastPasses.clone()
	s.mu.Unlock()
	for _, a := range s.appList() {
		sm.passes.addPasses(a)
	}
	return sm
}

func run(ctx context.Context, o options) (err error) {
	sc := o.sc
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "shoal-scale-"); err != nil {
			return err
		}
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	fmt.Printf("scale: %d server(s), %d hosts in %d zones, %d apps x %d instances = %d; health every %s, heartbeat %s, lost after %s; %d CPUs, load %s\n",
		sc.Servers, sc.Hosts, sc.Zones, sc.Apps, sc.PerApp, sc.Apps*sc.PerApp, sc.HealthInterval, sc.HeartbeatEvery, sc.LostAfter,
		goruntime.NumCPU(), loadavg())
	s, err := newServerSide(dir, sc)
	if err != nil {
		return err
	}
	var procs []*agents
	owner := map[string]*agents{} // host name -> its process
	defer func() {
		t := time.Now()
		if cerr := s.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("server side: %w", cerr))
		}
		for _, a := range procs {
			if werr := a.stop(); werr != nil {
				err = errors.Join(err, fmt.Errorf("agents: %w", werr))
			}
		}
		fmt.Printf("shutdown (every instance stopped, then the agents): %s\n", round(time.Since(t)))
	}()

	t := time.Now()
	specs, err := s.prepareHosts(filepath.Join(dir, "hosts"))
	if err != nil {
		return err
	}
	for i := range min(o.procs, len(specs)) {
		m := manifest{Server: s.url, CPU: sc.HostCPU, Memory: sc.HostMemory}
		if o.agentsProf != "" {
			m.CPUProfile = fmt.Sprintf("%s.%d", o.agentsProf, i)
		}
		for j := i; j < len(specs); j += o.procs {
			m.Hosts = append(m.Hosts, specs[j])
		}
		mpath := filepath.Join(dir, fmt.Sprintf("manifest-%d.json", i))
		b, _ := json.Marshal(m)
		if err := os.WriteFile(mpath, b, 0o600); err != nil {
			return err
		}
		a, err := startAgents(ctx, mpath)
		if err != nil {
			return err
		}
		procs = append(procs, a)
		for _, hs := range m.Hosts {
			owner[hs.Name] = a
		}
	}
	wait, cancel := context.WithTimeout(ctx, 10*time.Minute) // hosts and bring-up
	defer cancel()
	for _, a := range procs {
		if _, err := a.expect(wait, "agents ready"); err != nil {
			return err
		}
	}
	if err := s.waitHostsReady(wait); err != nil {
		return err
	}
	fmt.Printf("hosts: %d certificates issued, agents started, hello'd and listed in %s; %d term(s) begun\n", sc.Hosts, round(time.Since(t)), s.terms.Load())
	peer, err := s.latencyPeer()
	if err != nil {
		return err
	}
	defer peer.Close()
	latCtx, cancelLat := context.WithTimeout(ctx, 10*time.Minute) // both write latency measurements
	defer cancelLat()
	through, alone, retries, err := s.writeLatency(latCtx, peer, o.writes)
	if err != nil {
		return err
	}
	reportLatency("at idle (hosts only)", through, alone, retries, sc.Servers)

	if o.mutexProf != "" {
		goruntime.SetMutexProfileFraction(10)
		defer writeProfile(o.mutexProf, "mutex")
	}
	if o.blockProf != "" {
		goruntime.SetBlockProfileRate(int(time.Millisecond))
		defer writeProfile(o.blockProf, "block")
	}
	stopUp := startCPUProfile(o.upProfile)
	defer stopUp()
	before := s.sample(procs)
	t = time.Now()
	if err := s.startApps(); err != nil {
		return err
	}
	progress := s.progress(10 * time.Second)
	err = s.waitAppsReady(wait)
	progress()
	if err != nil {
		return err
	}
	if err := poll(wait, 50*time.Millisecond, func() error { return s.serving(nil) }); err != nil {
		return err
	}
	up := time.Since(t)
	afterUp := s.sample(procs)
	stopUp()
	lo, hi := s.spread()
	fmt.Printf("bring-up: %d instances placed, started and in service in %s (%.0f/s); %d to %d instances per host\n",
		sc.Apps*sc.PerApp, round(up), float64(sc.Apps*sc.PerApp)/up.Seconds(), lo, hi)
	report("bring-up", before, afterUp)
	s.reportRaft("bring-up", before, afterUp)
	s.reportEvents("bring-up", before, afterUp)

	// Steady state: nothing changes; the server side heartbeats, follows
	// exits, probes every instance and reconciles.
	split := startCPUSplit()
	start := s.sample(procs)
	select {
	case <-time.After(o.steady):
	case <-ctx.Done():
		return ctx.Err()
	}
	end := s.sample(procs)
	cpus, serr := split.stop(o.cpuProfile)
	rss, hwm := statusKB(0, "VmRSS"), statusKB(0, "VmHWM")
	h := heapNow()
	if o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return err
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	report("steady", start, end)
	if serr != nil {
		fmt.Printf("steady: CPU by server: %v\n", serr)
	} else {
		lead := "none"
		if r := s.leader(); r != nil {
			lead = r.id
		}
		fmt.Printf("steady: CPU by server (pprof labels): %s\n", formatSplit(cpus, lead))
	}
	s.reportEvents("steady", start, end)
	s.reportRaft("steady", start, end)
	var agentRSS int64
	for _, a := range procs {
		agentRSS += statusKB(a.cmd.Process.Pid, "VmRSS")
	}
	fmt.Printf("server side memory: heap in use %s (after GC), Go sys %s, RSS %s (peak %s), %d goroutines; agents' processes' RSS %s\n",
		mib(int64(h.inuse)), mib(int64(h.sys)), mib(rss), mib(hwm), goruntime.NumGoroutine(), mib(agentRSS))
	// Every instance must still serve; one that does not (a check that
	// timed out three times in a row) is reported, and given a minute to
	// be replaced or to pass again.
	if err := s.serving(nil); err != nil {
		t := time.Now()
		fmt.Printf("after the steady state: %v (%s); waiting for it to serve again\n", err, s.inService())
		again, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := poll(again, 50*time.Millisecond, func() error { return s.serving(nil) }); err != nil {
			return fmt.Errorf("after steady state: %w", err)
		}
		fmt.Printf("every instance in service again after %s\n", round(time.Since(t)))
	}
	through, alone, retries, err = s.writeLatency(latCtx, peer, o.writes)
	if err != nil {
		return err
	}
	reportLatency("at steady state", through, alone, retries, sc.Servers)
	snapCtx, cancelSnap := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelSnap()
	s.snapshot(snapCtx)
	if sc.Servers > 1 {
		fail, cancelFail := context.WithTimeout(ctx, 5*time.Minute)
		defer cancelFail()
		if err := s.failover(fail, procs); err != nil {
			return fmt.Errorf("failover: %w", err)
		}
	}
	wait, cancelLost := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelLost()

	// A host lost at that scale.
	lost, ids := s.busiestHost()
	beforeLost := s.sample(procs)
	t = time.Now()
	if _, err := fmt.Fprintf(owner[lost].stdin, "lose %s\n", lost); err != nil {
		return err
	}
	if _, err := owner[lost].expect(wait, "lost "+lost); err != nil {
		return err
	}
	if err := s.waitHostState(wait, lost, api.HostUnreachable); err != nil {
		return err
	}
	detect := time.Since(t)
	if err := poll(wait, 20*time.Millisecond, func() error { return s.serving(ids) }); err != nil {
		return err
	}
	fmt.Printf("host lost: %s with %d instances; declared unreachable after %s; all replaced and in service elsewhere after %s\n",
		lost, len(ids), round(detect), round(time.Since(t)))
	report("host lost", beforeLost, s.sample(procs))
	fmt.Printf("load average at the end: %s\n", loadavg())
	return nil
}

// startCPUProfile starts a CPU profile into path ("": none) and returns
// what stops it; a profile that cannot be started is reported and skipped.
func startCPUProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale: cpu profile:", err)
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
}

// writeProfile writes the named runtime profile to path.
func writeProfile(path, name string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup(name).WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", name, "profile:", err)
	}
}

// report prints the server side's CPU and the reconcile passes between a
// and b.
func report(what string, a, b sample) {
	wall := b.at.Sub(a.at).Seconds()
	p := b.passes.minus(a.passes)
	fmt.Printf("%s (%s): server side CPU %.2f s/s, agents' processes %.2f s/s; reconcile passes %d (%.1f/s), mean %s, p50 %s, p99 %s\n",
		what, round(b.at.Sub(a.at)), (b.cpu-a.cpu).Seconds()/wall, (b.agentCPU-a.agentCPU).Seconds()/wall,
		p.count, float64(p.count)/wall, dur(p.mean()), dur(p.quantile(0.5)), dur(p.quantile(0.99)))
}

// reportEvents prints how many events the apps stored between a and b,
// and how many of them were instances found unhealthy or lost (the
// churn that makes the reconcile passes of a steady state).
func (s *serverSide) reportEvents(what string, a, b sample) {
	evs, err := s.leaderStore().Events("", a.events, 0)
	if err != nil {
		fmt.Printf("%s: events: %v\n", what, err)
		return
	}
	n, unhealthy, failed := 0, 0, 0
	for _, e := range evs {
		if e.Seq > b.events {
			break
		}
		n++
		if e.Type != "state" {
			continue
		}
		switch e.State {
		case api.Unhealthy.String():
			unhealthy++
		case api.Failed.String():
			failed++
		}
	}
	fmt.Printf("%s: %d events stored; of the %d the store keeps, %d instances turned unhealthy, %d failed\n",
		what, b.events-a.events, n, unhealthy, failed)
}

func dur(d time.Duration) string {
	if d < 0 {
		return "> 1s"
	}
	return d.Round(time.Microsecond).String()
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
