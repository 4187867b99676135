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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/store"
)

// options are the command line's.
type options struct {
	sc         scenario
	servers    []int // the counts of servers measured, one after the other
	procs      int   // agents' processes
	writes     int   // of each write latency measurement
	steady     time.Duration
	dir        string
	keep       bool
	cpuProfile string
	memProfile string
	upProfile  string // CPU profile of the bring-up
	agentsProf string // prefix of the agents' processes' CPU profiles
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	servers := fs.String("servers", "1", "`counts` of servers holding the state, comma-separated, measured one after the other in this run: 1 is one shoal server, more a Raft cluster; each server is a process (servers.go)")
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
	fs.DurationVar(&o.sc.StartGrace, "start-grace", 5*time.Second, "the fleet's start_grace (the default)")
	fs.IntVar(&o.procs, "agent-procs", 4, "`processes` the simulated hosts are spread over (each holds a listener per instance: 10,000 need more descriptors than one process may open here)")
	fs.DurationVar(&o.steady, "steady", 60*time.Second, "how long steady state is measured")
	fs.StringVar(&o.dir, "dir", "", "working `folder` (default: a new temp folder, removed at the end)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working folder")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the leader's process's CPU profile of the steady state to `file` (.N for N servers)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write the leader's process's heap profile at steady state to `file` (.N for N servers)")
	fs.StringVar(&o.agentsProf, "agentsprofile", "", "write each agents' process's CPU profile (whole run) to `prefix`.N")
	fs.StringVar(&o.upProfile, "upcpuprofile", "", "write the leader's process's CPU profile of the bring-up to `file` (.N for N servers)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, f := range strings.Split(*servers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 7 {
			return o, fmt.Errorf("-servers %q: each count must be 1 to 7", *servers)
		}
		o.servers = append(o.servers, n)
	}
	if o.sc.Hosts < 1 || o.sc.Hosts > 40000 || o.sc.Zones < 1 || o.sc.Apps < 1 || o.sc.PerApp < 1 || o.sc.MaxReplacing < 1 || o.procs < 1 ||
		o.writes < 1 {
		return o, errors.New("-hosts (1-40000), -zones, -apps, -per, -max-replacing, -agent-procs and -writes must be positive")
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

// sample is the counters of a run at one moment.
type sample struct {
	at        time.Time
	cpu       time.Duration            // this process (the relay)
	serverCPU map[string]time.Duration // each live server's process
	agentCPU  time.Duration            // the agents' processes
	passes    hist
	events    uint64 // the leader's store's last event number: state changes and other events
	index     uint64 // the leader's last applied raft log entry (cluster)
	hostPuts  int64  // the fleet's host record writes, every server
	terms     int64  // terms begun (a change of leader begins one)
}

// run measures the scenario once for each count of servers in
// o.servers, one after the other: the first is compared with the others
// in the same run.
func run(ctx context.Context, o options) error {
	for _, n := range o.servers {
		o.sc.Servers = n
		run := o
		for _, p := range []*string{&run.cpuProfile, &run.memProfile, &run.upProfile} {
			if *p != "" {
				*p = fmt.Sprintf("%s.%d", *p, n)
			}
		}
		if err := runOne(ctx, run); err != nil {
			return fmt.Errorf("%d server(s): %w", n, err)
		}
	}
	return nil
}

func runOne(ctx context.Context, o options) (err error) {
	sc := o.sc
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "shoal-scale-"); err != nil {
			return err
		}
	} else {
		dir = filepath.Join(dir, fmt.Sprintf("servers-%d", sc.Servers))
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	fmt.Printf("scale: %d server(s) (a process each), %d hosts in %d zones, %d apps x %d instances = %d; health every %s, heartbeat %s, lost after %s, election timeout %s; %d CPUs, load %s\n",
		sc.Servers, sc.Hosts, sc.Zones, sc.Apps, sc.PerApp, sc.Apps*sc.PerApp, sc.HealthInterval, sc.HeartbeatEvery, sc.LostAfter,
		sc.ElectionTimeout, goruntime.NumCPU(), loadavg())
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		return err
	}
	t := time.Now()
	specs, err := prepareHosts(ca, sc, filepath.Join(dir, "hosts"))
	if err != nil {
		return err
	}
	var names []string
	for _, hs := range specs {
		names = append(names, hs.Name)
	}
	wait, cancel := context.WithTimeout(ctx, 10*time.Minute) // servers, hosts and bring-up
	defer cancel()
	ss, err := startServers(wait, dir, sc, ca, names)
	if err != nil {
		return err
	}
	var procs []*agents
	owner := map[string]*agents{} // host name -> its process
	defer func() {
		t := time.Now()
		if cerr := ss.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("servers: %w", cerr))
		}
		for _, a := range procs {
			if werr := a.stop(); werr != nil {
				err = errors.Join(err, fmt.Errorf("agents: %w", werr))
			}
		}
		fmt.Printf("shutdown (every server, then the agents): %s\n", round(time.Since(t)))
	}()
	for i := range min(o.procs, len(specs)) {
		m := manifest{Server: ss.url, CPU: sc.HostCPU, Memory: sc.HostMemory}
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
	for _, a := range procs {
		if _, err := a.expect(wait, "agents ready"); err != nil {
			return err
		}
	}
	if err := ss.check(wait, 100*time.Millisecond, "hosts"); err != nil {
		return err
	}
	fmt.Printf("hosts: %d certificates issued, %d server(s) started, agents started, hello'd and listed in %s; %d term(s) begun\n",
		sc.Hosts, sc.Servers, round(time.Since(t)), ss.termsBegun())
	latCtx, cancelLat := context.WithTimeout(ctx, 10*time.Minute) // both write latency measurements
	defer cancelLat()
	through, alone, retries, err := ss.writeLatency(latCtx, o.writes)
	if err != nil {
		return err
	}
	reportLatency("at idle (hosts only)", through, alone, retries, sc.Servers)

	stopUp := ss.leaderProfile(wait, o.upProfile)
	before := ss.sample(wait, procs)
	t = time.Now()
	if err := ss.startApps(wait); err != nil {
		return err
	}
	progress := ss.progress(10 * time.Second)
	err = ss.check(wait, 50*time.Millisecond, "apps")
	progress()
	if err != nil {
		return err
	}
	if err := ss.check(wait, 50*time.Millisecond, "serving"); err != nil {
		return err
	}
	up := time.Since(t)
	afterUp := ss.sample(wait, procs)
	stopUp()
	spread, _ := ss.askLeader(wait, "spread")
	fmt.Printf("bring-up: %d instances placed, started and in service in %s (%.0f/s); instances per host, fewest and most: %s\n",
		sc.Apps*sc.PerApp, round(up), float64(sc.Apps*sc.PerApp)/up.Seconds(), strings.TrimPrefix(spread, "spread "))
	report("bring-up", before, afterUp)
	ss.reportCPU("bring-up", before, afterUp)
	ss.reportRaft("bring-up", before, afterUp)
	ss.reportEvents(wait, "bring-up", before, afterUp)

	// Steady state: nothing changes; the leader heartbeats, follows
	// exits, probes every instance and reconciles.
	stopSteady := ss.leaderProfile(wait, o.cpuProfile)
	start := ss.sample(wait, procs)
	select {
	case <-time.After(o.steady):
	case <-ctx.Done():
		return ctx.Err()
	}
	end := ss.sample(wait, procs)
	stopSteady()
	if o.memProfile != "" {
		ss.askLeader(wait, "heapprofile", o.memProfile)
	}
	report("steady", start, end)
	ss.reportCPU("steady", start, end)
	ss.reportEvents(wait, "steady", start, end)
	ss.reportRaft("steady", start, end)
	var agentRSS int64
	for _, a := range procs {
		agentRSS += statusKB(a.cmd.Process.Pid, "VmRSS")
	}
	fmt.Printf("servers' memory: %s; agents' processes' RSS %s\n", ss.reportMemory(wait), mib(agentRSS))
	// Every instance must still serve; one that does not (a check that
	// timed out three times in a row) is reported, and given a minute to
	// be replaced or to pass again.
	if a, err := ss.askLeader(wait, "serving"); err != nil || a != "ok" {
		t := time.Now()
		st, _ := ss.askLeader(wait, "states")
		fmt.Printf("after the steady state: %s%v (%s); waiting for it to serve again\n", a, err, st)
		again, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := ss.check(again, 50*time.Millisecond, "serving"); err != nil {
			return fmt.Errorf("after steady state: %w", err)
		}
		fmt.Printf("every instance in service again after %s\n", round(time.Since(t)))
	}
	through, alone, retries, err = ss.writeLatency(latCtx, o.writes)
	if err != nil {
		return err
	}
	reportLatency("at steady state", through, alone, retries, sc.Servers)
	if sc.Servers > 1 {
		snapCtx, cancelSnap := context.WithTimeout(ctx, 2*time.Minute)
		defer cancelSnap()
		var took time.Duration
		var size int64
		a, err := ss.askLeader(snapCtx, "snapshot")
		if err == nil {
			_, err = fmt.Sscanf(a, "snapshot %d %d", &took, &size)
		}
		if err != nil {
			fmt.Printf("snapshot on the leader: %s %v\n", a, err)
		} else {
			fmt.Printf("snapshot on the leader %s: %s, %s (the store's file)\n", ss.leader().id, round(took), mib(size))
		}
		fail, cancelFail := context.WithTimeout(ctx, 5*time.Minute)
		defer cancelFail()
		if err := ss.failover(fail, procs); err != nil {
			return fmt.Errorf("failover: %w", err)
		}
	}
	lostCtx, cancelLost := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelLost()

	// A host lost at that scale.
	b, err := ss.askLeader(lostCtx, "busiest")
	if err != nil {
		return err
	}
	f := strings.Fields(b)
	if len(f) < 2 || f[0] != "busiest" {
		return fmt.Errorf("busiest host: %q", b)
	}
	lost, ids := f[1], f[2:]
	beforeLost := ss.sample(lostCtx, procs)
	t = time.Now()
	if _, err := fmt.Fprintf(owner[lost].stdin, "lose %s\n", lost); err != nil {
		return err
	}
	if _, err := owner[lost].expect(lostCtx, "lost "+lost); err != nil {
		return err
	}
	if err := ss.check(lostCtx, 20*time.Millisecond, "hoststate", lost, string(api.HostUnreachable)); err != nil {
		return err
	}
	detect := time.Since(t)
	if err := ss.check(lostCtx, 20*time.Millisecond, append([]string{"serving"}, ids...)...); err != nil {
		return err
	}
	fmt.Printf("host lost: %s with %d instances; declared unreachable after %s; all replaced and in service elsewhere after %s\n",
		lost, len(ids), round(detect), round(time.Since(t)))
	report("host lost", beforeLost, ss.sample(lostCtx, procs))
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

// report prints the servers' CPU (every server's process alive at both
// a and b) and the reconcile passes between a and b.
func report(what string, a, b sample) {
	wall := b.at.Sub(a.at).Seconds()
	p := b.passes.minus(a.passes)
	var cpu time.Duration
	for id, c := range b.serverCPU {
		if c0, ok := a.serverCPU[id]; ok {
			cpu += c - c0
		}
	}
	fmt.Printf("%s (%s): servers' CPU %.2f s/s, agents' processes %.2f s/s; reconcile passes %d (%.1f/s), mean %s, p50 %s, p99 %s\n",
		what, round(b.at.Sub(a.at)), cpu.Seconds()/wall, (b.agentCPU-a.agentCPU).Seconds()/wall,
		p.count, float64(p.count)/wall, dur(p.mean()), dur(p.quantile(0.5)), dur(p.quantile(0.99)))
}

// eventCounts counts the events st stored after seq a up to seq b, and
// how many of them were instances found unhealthy or failed (the churn
// that makes the reconcile passes of a steady state); n counts only
// those the store still keeps.
func eventCounts(st *store.Store, a, b uint64) (n, unhealthy, failed int, err error) {
	evs, err := st.Events("", a, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, e := range evs {
		if e.Seq > b {
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
	return n, unhealthy, failed, nil
}

func dur(d time.Duration) string {
	if d < 0 {
		return "> 1s"
	}
	return d.Round(time.Microsecond).String()
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
