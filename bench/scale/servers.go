package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/pki"
)

// The servers of a run, each its own OS process: this program again with
// SCALE_SERVER set to its manifest (serverchild.go), holding one replica
// (a store alone with -servers 1; with more, a cluster.Node with its own
// raft listener, raft-boltdb log, store and data dir under
// dir/servers/sN) and, while it leads, the term (term.go): the fleet and
// the controllers. The kernel shares the CPU between the processes, so a
// follower's raft is not starved by the leader's goroutines, and each
// process's CPU time and memory are its own (/proc/PID). s0 bootstraps;
// the others are added as voters once s0 leads.
//
// The agents reach the servers through one address of this process, a
// TCP relay to the fleet's port of the server whose term runs (what an
// agent's redirect to the leader does in a real cluster): mutual TLS
// passes through it end to end. Killing the leader is SIGKILL.

// serverProc is one server's process, as this process sees it.
type serverProc struct {
	id        string
	dir       string
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	answers   chan string
	raftAddr  string
	fleetAddr string
	mu        sync.Mutex // one question at a time
	dead      bool       // killed
	last      serverSample
}

// servers is the servers' processes and the relay to the leader's.
type servers struct {
	sc    scenario
	dir   string
	ca    *pki.CA
	procs []*serverProc
	ln    net.Listener
	url   string

	mu    sync.Mutex
	lead  *serverProc // whose term runs; nil between terms
	terms int64       // terms begun, every server
	conns map[net.Conn]bool
	wg    sync.WaitGroup
	// closing ends the relay's waits for a leader.
	closing context.Context
	stop    context.CancelFunc
}

// startServers starts sc.Servers server processes for the hosts named
// and waits until s0 leads all of them, then serves the relay.
func startServers(ctx context.Context, dir string, sc scenario, ca *pki.CA, hosts []string) (_ *servers, err error) {
	ss := &servers{sc: sc, dir: dir, ca: ca, conns: map[net.Conn]bool{}}
	ss.closing, ss.stop = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			ss.close()
		}
	}()
	if err := writeAppConfigs(dir, sc); err != nil {
		return nil, err
	}
	n := max(sc.Servers, 1)
	for i := range n {
		p, err := ss.start(ctx, i, hosts)
		if err != nil {
			return nil, fmt.Errorf("server s%d: %w", i, err)
		}
		ss.procs = append(ss.procs, p)
	}
	for _, p := range ss.procs[1:] {
		if a, err := ss.procs[0].call(ctx, "add", p.id, p.raftAddr); err != nil || a != "ok" {
			return nil, fmt.Errorf("add %s: %s%v", p.id, a, err)
		}
	}
	if ss.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	ss.url = "https://" + ss.ln.Addr().String()
	ss.wg.Go(ss.relay)
	return ss, nil
}

// start starts server i's process and waits until it is ready (s0: until
// it leads its cluster of one).
func (ss *servers) start(ctx context.Context, i int, hosts []string) (*serverProc, error) {
	m := serverManifest{Dir: ss.dir, Index: i, Scenario: ss.sc, Hosts: hosts}
	p := &serverProc{id: fmt.Sprintf("s%d", i), dir: filepath.Join(ss.dir, "servers", fmt.Sprintf("s%d", i)), answers: make(chan string, 1)}
	path := filepath.Join(ss.dir, fmt.Sprintf("server-%d.json", i))
	b, _ := json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(exe)
	p.cmd.Env = append(os.Environ(), serverEnv+"="+path)
	p.cmd.Stderr = os.Stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(p.answers)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "term "); ok {
				ss.term(p, rest)
				continue
			}
			p.answers <- sc.Text()
		}
	}()
	ready, err := p.read(ctx)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(ready)
	if len(f) != 5 || f[0] != "server" || f[1] != "ready" {
		return nil, fmt.Errorf("it said %q, want \"server ready ID RAFTADDR URL\"", ready)
	}
	p.raftAddr, p.fleetAddr = f[3], strings.TrimPrefix(f[4], "https://")
	return p, nil
}

// term follows a server's "term begins N" and "term ends N".
func (ss *servers) term(p *serverProc, what string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if strings.HasPrefix(what, "begins ") {
		ss.lead = p
		ss.terms++
	} else if ss.lead == p {
		ss.lead = nil
	}
}

// leader is the server whose term runs; nil between terms.
func (ss *servers) leader() *serverProc {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.lead
}

func (ss *servers) termsBegun() int64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.terms
}

// read waits for p's next line.
func (p *serverProc) read(ctx context.Context) (string, error) {
	select {
	case l, ok := <-p.answers:
		if !ok {
			return "", fmt.Errorf("server %s's process ended", p.id)
		}
		return l, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for server %s: %w", p.id, ctx.Err())
	}
}

// call sends p one command and returns its answer line.
func (p *serverProc) call(ctx context.Context, words ...string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return "", fmt.Errorf("server %s was killed", p.id)
	}
	if _, err := fmt.Fprintln(p.stdin, strings.Join(words, " ")); err != nil {
		return "", fmt.Errorf("server %s: %w", p.id, err)
	}
	return p.read(ctx)
}

// askLeader asks the server whose term runs, waiting for one.
func (ss *servers) askLeader(ctx context.Context, words ...string) (string, error) {
	var p *serverProc
	if err := poll(ctx, 10*time.Millisecond, func() error {
		if p = ss.leader(); p == nil {
			return errors.New("no server's term runs")
		}
		return nil
	}); err != nil {
		return "", err
	}
	return p.call(ctx, words...)
}

// check polls the leader with a check command until it answers "ok".
func (ss *servers) check(ctx context.Context, period time.Duration, words ...string) error {
	return poll(ctx, period, func() error {
		a, err := ss.askLeader(ctx, words...)
		if err != nil {
			return err
		}
		if a != "ok" {
			return errors.New(strings.TrimPrefix(a, "no "))
		}
		return nil
	})
}

// relay accepts the agents' connections and joins each one to the
// leader's fleet port.
func (ss *servers) relay() {
	for {
		c, err := ss.ln.Accept()
		if err != nil {
			return
		}
		ss.mu.Lock()
		ss.conns[c] = true
		ss.mu.Unlock()
		ss.wg.Go(func() {
			defer func() {
				ss.mu.Lock()
				delete(ss.conns, c)
				ss.mu.Unlock()
				c.Close()
			}()
			ss.join(c)
		})
	}
}

// join copies between c and the leader's fleet port (waiting up to a
// minute for a leader) until either side ends.
func (ss *servers) join(c net.Conn) {
	ctx, cancel := context.WithTimeout(ss.closing, time.Minute)
	defer cancel()
	var p *serverProc
	if poll(ctx, 20*time.Millisecond, func() error {
		if p = ss.leader(); p == nil {
			return errors.New("no leader")
		}
		return nil
	}) != nil {
		return
	}
	up, err := net.Dial("tcp", p.fleetAddr)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	up.Close()
	c.Close()
	<-done
}

// kill kills p's process (SIGKILL), as a machine that dies.
func (ss *servers) kill(p *serverProc) error {
	p.mu.Lock()
	p.dead = true
	p.mu.Unlock()
	ss.mu.Lock()
	if ss.lead == p {
		ss.lead = nil
	}
	ss.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	p.cmd.Wait()
	return nil
}

// close ends every server's process (stdin closed: it closes its replica;
// a server alone stops its instances first) and the relay.
func (ss *servers) close() error {
	var errs []error
	for _, p := range ss.procs {
		if !p.dead {
			p.stdin.Close()
		}
	}
	for _, p := range ss.procs {
		if p.dead {
			continue
		}
		for range p.answers {
		}
		if err := p.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("server %s: %w", p.id, err))
		}
	}
	ss.stop()
	if ss.ln != nil {
		ss.ln.Close()
		ss.mu.Lock()
		for c := range ss.conns {
			c.Close()
		}
		ss.mu.Unlock()
		ss.wg.Wait()
	}
	return errors.Join(errs...)
}

// sample is every server's counters now: CPU from /proc, the rest from
// each live server (a killed one's last sample stands).
func (ss *servers) sample(ctx context.Context, agentProcs []*agents) sample {
	sm := sample{at: time.Now(), cpu: cpuSelf(), serverCPU: map[string]time.Duration{}, terms: ss.termsBegun()}
	for _, a := range agentProcs {
		c, _ := cpuOf(a.cmd.Process.Pid)
		sm.agentCPU += c
	}
	lead := ss.leader()
	for _, p := range ss.procs {
		if !p.dead {
			c, _ := cpuOf(p.cmd.Process.Pid)
			sm.serverCPU[p.id] = c
			if a, err := p.call(ctx, "sample"); err == nil {
				var s serverSample
				if json.Unmarshal([]byte(strings.TrimPrefix(a, "sample ")), &s) == nil {
					p.last = s
				}
			}
		}
		sm.passes = sm.passes.plus(p.last.Passes)
		sm.hostPuts += p.last.HostPuts
		if p == lead || lead == nil && sm.index == 0 {
			sm.events, sm.index = p.last.Events, p.last.Index
		}
	}
	return sm
}

// writeLatency makes n scale writes (alternately 2 and 1) through the
// leader, each followed by the same write on a store alone in the
// leader's process (the peer in the same run), and returns both sets of
// latencies as the leader's process measured them. A write cut by a
// change of leader is made again on the new leader; such a write's
// latency is this process's time from the first try, and retries counts
// them.
func (ss *servers) writeLatency(ctx context.Context, n int) (through, alone latencies, retries int, err error) {
	for i := range n {
		want := strconv.Itoa(2 - i%2)
		t := time.Now()
		for try := 0; ; try++ {
			a, err := ss.askLeader(ctx, "write", want)
			if err == nil && strings.HasPrefix(a, "wrote ") {
				var th, al time.Duration
				if _, err := fmt.Sscanf(a, "wrote %d %d", &th, &al); err != nil {
					return nil, nil, retries, fmt.Errorf("write latency: %q: %w", a, err)
				}
				if try > 0 {
					th = time.Since(t)
				}
				through, alone = append(through, th), append(alone, al)
				break
			}
			if try == 20 || err == nil && !strings.HasPrefix(a, "retry ") {
				return nil, nil, retries, fmt.Errorf("write latency: %s%v", a, err)
			}
			retries++
			// Until another term begins (or the same server's again).
			begun := ss.termsBegun()
			if err := poll(ctx, 5*time.Millisecond, func() error {
				if ss.termsBegun() == begun && ss.leader() == nil {
					return errors.New("no leader")
				}
				return nil
			}); err != nil {
				return nil, nil, retries, fmt.Errorf("write latency: %w", err)
			}
		}
	}
	return through, alone, retries, nil
}

// reportRaft prints the raft log's growth between a and b on the leader
// (entries, and the fleet's host record writes among them, which a
// heartbeat must not make), and each server's files.
func (ss *servers) reportRaft(what string, a, b sample) {
	if ss.sc.Servers == 1 {
		fmt.Printf("%s: host record writes %d (one server: no raft log)\n", what, b.hostPuts-a.hostPuts)
		return
	}
	mins := b.at.Sub(a.at).Minutes()
	fmt.Printf("%s: raft log +%d entries (%.0f/min); of them host record writes %d, events stored %d (in batches); %d heartbeats a second go to the agents, not to the log; %d new term(s)\n",
		what, b.index-a.index, float64(b.index-a.index)/mins, b.hostPuts-a.hostPuts, b.events-a.events, ss.sc.Hosts/int(max(ss.sc.HeartbeatEvery.Seconds(), 1)), b.terms-a.terms)
	var parts []string
	for _, p := range ss.procs {
		parts = append(parts, fmt.Sprintf("%s raft.db %s, shoal.db %s", p.id, mib(fileSize(filepath.Join(p.dir, "raft", "raft.db"))), mib(fileSize(filepath.Join(p.dir, "shoal.db")))))
	}
	fmt.Printf("%s: files: %s\n", what, strings.Join(parts, "; "))
}

// reportEvents prints how many events the leader's store holds between a
// and b, and how many of them were instances found unhealthy or failed.
func (ss *servers) reportEvents(ctx context.Context, what string, a, b sample) {
	ans, err := ss.askLeader(ctx, "events", strconv.FormatUint(a.events, 10), strconv.FormatUint(b.events, 10))
	var n, unhealthy, failed int
	if err == nil {
		_, err = fmt.Sscanf(ans, "events %d %d %d", &n, &unhealthy, &failed)
	}
	if err != nil {
		fmt.Printf("%s: events: %s %v\n", what, ans, err)
		return
	}
	fmt.Printf("%s: %d events stored; of the %d the store keeps, %d instances turned unhealthy, %d failed\n",
		what, b.events-a.events, n, unhealthy, failed)
}

// reportCPU prints each server's CPU between a and b, the leader's
// first, and this process's (the relay).
func (ss *servers) reportCPU(what string, a, b sample) {
	wall := b.at.Sub(a.at).Seconds()
	lead := ss.leader()
	var parts []string
	for _, p := range ss.procs {
		role := "follower"
		if p == lead {
			role = "leader"
		}
		c0, ok0 := a.serverCPU[p.id]
		c1, ok1 := b.serverCPU[p.id]
		if !ok0 || !ok1 {
			continue
		}
		s := fmt.Sprintf("%s %s %.3f s/s", role, p.id, (c1-c0).Seconds()/wall)
		if p == lead {
			parts = append([]string{s}, parts...)
		} else {
			parts = append(parts, s)
		}
	}
	fmt.Printf("%s: CPU by server process: %s; the bench's process (relay) %.3f s/s\n", what, strings.Join(parts, "; "), (b.cpu-a.cpu).Seconds()/wall)
}

// reportMemory prints each server's RSS (peak) and Go heap.
func (ss *servers) reportMemory(ctx context.Context) string {
	var parts []string
	for _, p := range ss.procs {
		if p.dead {
			continue
		}
		line := fmt.Sprintf("%s RSS %s (peak %s)", p.id, mib(statusKB(p.cmd.Process.Pid, "VmRSS")), mib(statusKB(p.cmd.Process.Pid, "VmHWM")))
		if a, err := p.call(ctx, "mem"); err == nil {
			var inuse, sys, gor int64
			if _, err := fmt.Sscanf(a, "mem %d %d %d", &inuse, &sys, &gor); err == nil {
				line += fmt.Sprintf(", heap in use %s after GC, %d goroutines", mib(inuse), gor)
			}
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

// failover kills the leader's process and measures the time to a new
// leader whose controllers adopted every instance and serve them all,
// and the instances launched meanwhile (none should be: every one is
// adopted).
func (ss *servers) failover(ctx context.Context, procs []*agents) error {
	starts0, running0, again0, err := counts(ctx, procs)
	if err != nil {
		return err
	}
	killed := ss.leader()
	if killed == nil {
		return errors.New("kill the leader: no server's term runs")
	}
	before := ss.sample(ctx, procs)
	begun := ss.termsBegun()
	t := time.Now()
	if err := ss.kill(killed); err != nil {
		return err
	}
	var elected time.Duration
	if err := poll(ctx, 5*time.Millisecond, func() error {
		for _, p := range ss.procs {
			if p.dead {
				continue
			}
			if a, err := p.call(ctx, "isleader"); err == nil && a == "yes" {
				elected = time.Since(t)
				return nil
			}
		}
		return errors.New("no new leader yet")
	}); err != nil {
		return err
	}
	if err := poll(ctx, 5*time.Millisecond, func() error {
		if ss.termsBegun() == begun || ss.leader() == nil {
			return errors.New("the new leader's term has not begun")
		}
		return nil
	}); err != nil {
		return err
	}
	began := time.Since(t)
	if err := ss.check(ctx, 20*time.Millisecond, "apps"); err != nil {
		return err
	}
	if err := ss.check(ctx, 20*time.Millisecond, "serving"); err != nil {
		return err
	}
	ready := time.Since(t)
	starts1, running1, again1, err := counts(ctx, procs)
	if err != nil {
		return err
	}
	fmt.Printf("failover: leader %s's process killed (SIGKILL); %s elected after %s; its term began after %s; all %d instances adopted and in service after %s; instances launched meanwhile %d (replacements of instances found unhealthy or failed included), of them under an id started before %d; running %d before, %d after\n",
		killed.id, ss.leader().id, round(elected), round(began), ss.sc.Apps*ss.sc.PerApp, round(ready), starts1-starts0, again1-again0, running0, running1)
	// Why any instance was launched: hosts the new term declared lost (a
	// replacement for each of their instances), or instances found
	// unhealthy or failed.
	lost, err := ss.askLeader(ctx, "lost")
	if err != nil {
		return err
	}
	fmt.Printf("failover: hosts the new leader declared lost: %s\n", strings.TrimPrefix(lost, "lost "))
	ss.reportEvents(ctx, "failover", before, ss.sample(ctx, procs))
	return nil
}

// startApps creates the apps on every live server: the leader's term
// runs their controllers, and every later term too.
func (ss *servers) startApps(ctx context.Context) error {
	for _, p := range ss.procs {
		if p.dead {
			continue
		}
		if a, err := p.call(ctx, "create"); err != nil || a != "ok" {
			return fmt.Errorf("start apps on %s: %s%v", p.id, a, err)
		}
	}
	return nil
}

// progress prints, every period until the returned func is called, the
// leader's instances and hosts by state, with the load average.
func (ss *servers) progress(period time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		start := time.Now()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			a, err := ss.askLeader(ctx, "states")
			if err != nil {
				return
			}
			fmt.Printf("  %4.0fs: %s; load %s\n", time.Since(start).Seconds(), strings.TrimPrefix(a, "states "), loadavg())
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// leaderProfile starts the leader's process's CPU profile into path (""
// : none) and returns what stops it.
func (ss *servers) leaderProfile(ctx context.Context, path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	p := ss.leader()
	if p == nil {
		fmt.Fprintln(os.Stderr, "scale: cpu profile: no leader")
		return func() {}
	}
	if a, err := p.call(ctx, "cpuprofile", path); err != nil || a != "ok" {
		fmt.Fprintf(os.Stderr, "scale: cpu profile on %s: %s%v\n", p.id, a, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() { p.call(ctx, "cpuprofile") })
	}
}
