package daemon

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/config"
)

// The floating address (lb.yaml's vip section). `shoal lb` runs keepalived
// as its own child and keeps the address honest around it:
//
//   - keepalived.conf is written into the vip's directory at every start:
//     one VRRP instance (version 3, unicast to the peers, nopreempt) whose
//     track_script runs `shoal lb check` on this balancer's admin API, so
//     a balancer that stops answering puts the node in FAULT and the
//     address moves although the host is fine.
//   - keepalived runs with -n (in the foreground), its pid files in the
//     directory, and Pdeathsig SIGTERM: when shoal lb dies, even by
//     SIGKILL, the kernel sends keepalived SIGTERM, which releases the
//     address and sends a priority-0 advert, so a peer takes over at once.
//   - before keepalived starts (and after it exits), the address is
//     removed from the interface if present: a keepalived killed with
//     SIGKILL (with shoal lb, or alone) leaves it configured, and two nodes
//     would answer for it. A keepalived still running from the pid file of
//     an earlier run is killed first.
//   - fencing while keepalived runs: keepalived reports its state changes
//     on a FIFO (vrrp_notify_fifo); whenever the state is not MASTER and
//     the address is on the interface at two checks in a row with no
//     state change between them, the address is removed.
//
// The vipKeeper is that supervisor: openVIP prepares it (the stale
// address cleared), run supervises keepalived until its context ends.

// vipFenceEvery is how often the address is checked against keepalived's
// state, and vipRestartMin/Max bound the wait before keepalived is started
// again after it died.
const (
	vipFenceEvery = time.Second
	vipRestartMin = time.Second
	vipRestartMax = 30 * time.Second
	vipStopGrace  = 5 * time.Second
	vipInstance   = "shoal"
)

// vipKeeper runs keepalived for one floating address; see above.
type vipKeeper struct {
	cfg        config.LBVIP
	keepalived string // resolved executable
	conf       string
	fifo       string
	pidFile    string
	vrrpPid    string
	log        *slog.Logger

	mu    sync.Mutex
	state string // keepalived's last reported state: MASTER, BACKUP, FAULT, STOP; "" before any
	gen   uint64 // counts state reports
}

// openVIP prepares the floating address of cfg for the balancer whose
// lb.yaml is lbPath: it finds keepalived, writes keepalived.conf (with a
// check that runs this executable's `lb check -c lbPath`), makes the
// notify FIFO, ends a keepalived left running by an earlier run and
// removes the address from the interface if it is there.
func openVIP(cfg config.LBVIP, lbPath string, log *slog.Logger) (*vipKeeper, error) {
	bin, err := exec.LookPath(cfg.Keepalived)
	if err != nil {
		return nil, fmt.Errorf("vip: keepalived (%s) not found: %w (Debian: apt-get install keepalived; or set vip.keepalived)", cfg.Keepalived, err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("vip: the ip command (iproute2) is needed to clear a stale address: %w", err)
	}
	if _, err := net.InterfaceByName(cfg.Interface); err != nil {
		return nil, fmt.Errorf("vip: interface %s: %w", cfg.Interface, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("vip: this program's path, for keepalived's check: %w", err)
	}
	lbPath, err = filepath.Abs(lbPath)
	if err != nil {
		return nil, fmt.Errorf("vip: %w", err)
	}
	for _, p := range []string{self, lbPath} {
		if strings.ContainsAny(p, " \t\n\"'{}#\\") {
			return nil, fmt.Errorf("vip: %q: keepalived's check cannot run a path with spaces, quotes, braces or '#'", p)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("vip: %w", err)
	}
	k := &vipKeeper{cfg: cfg, keepalived: bin, log: log,
		conf:    filepath.Join(cfg.Dir, "keepalived.conf"),
		fifo:    filepath.Join(cfg.Dir, "notify.fifo"),
		pidFile: filepath.Join(cfg.Dir, "keepalived.pid"),
		vrrpPid: filepath.Join(cfg.Dir, "vrrp.pid"),
	}
	if err := atomicfile.Write(k.conf, []byte(keepalivedConf(cfg, k.fifo, self, lbPath)), 0o600); err != nil {
		return nil, fmt.Errorf("vip: %w", err)
	}
	if fi, err := os.Lstat(k.fifo); err == nil && fi.Mode()&os.ModeNamedPipe == 0 {
		return nil, fmt.Errorf("vip: %s exists and is not a FIFO", k.fifo)
	} else if errors.Is(err, os.ErrNotExist) {
		if err := syscall.Mkfifo(k.fifo, 0o600); err != nil {
			return nil, fmt.Errorf("vip: make the notify FIFO: %w", err)
		}
	}
	k.endLeftover()
	if err := k.clear("at start, before keepalived runs"); err != nil {
		return nil, err
	}
	return k, nil
}

// keepalivedConf is the keepalived.conf of cfg: the notify FIFO, and a
// check that runs `self lb check -c lbPath` every second (two failures
// put the node in FAULT, two passes take it out), as root: keepalived's
// enable_script_security is off, since it refuses a program under any
// directory a non-root user may write (such as /tmp, where tests build
// shoal); install shoal where only root writes.
func keepalivedConf(cfg config.LBVIP, fifo, self, lbPath string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by shoal lb at every start; edits are lost. See lb.yaml's vip section.
global_defs {
	vrrp_version 3
	vrrp_notify_fifo %s
	script_user root
	vrrp_garp_master_delay 1
	vrrp_garp_master_repeat 3
	vrrp_garp_master_refresh 10
	vrrp_higher_prio_send_advert true
}

vrrp_script shoal_lb_check {
	script "%s lb check -c %s"
	interval 1
	timeout 2
	fall 2
	rise 2
}

vrrp_instance %s {
	state BACKUP
	nopreempt
	interface %s
	virtual_router_id %d
	priority %d
	advert_int %s
`, fifo, self, lbPath, vipInstance, cfg.Interface, cfg.RouterID, cfg.Priority,
		strconv.FormatFloat(cfg.AdvertInterval.Seconds(), 'f', -1, 64))
	if cfg.Source.IsValid() {
		fmt.Fprintf(&b, "\tunicast_src_ip %s\n", cfg.Source)
	}
	b.WriteString("\tunicast_peer {\n")
	for _, p := range cfg.Peers {
		fmt.Fprintf(&b, "\t\t%s\n", p)
	}
	fmt.Fprintf(&b, "\t}\n\tvirtual_ipaddress {\n\t\t%s dev %s\n\t}\n\ttrack_script {\n\t\tshoal_lb_check\n\t}\n}\n",
		cfg.Address, cfg.Interface)
	return b.String()
}

// endLeftover kills a keepalived still running from an earlier run of
// this balancer (its pid files), which would otherwise hold or take the
// address beside the one run starts, and removes the pid files: a pid
// file naming a process that is gone but not yet reaped (a zombie, which
// still counts as alive) makes keepalived refuse to start ("daemon is
// already running").
func (k *vipKeeper) endLeftover() {
	defer func() {
		os.Remove(k.pidFile)
		os.Remove(k.vrrpPid)
	}()
	for _, f := range []string{k.pidFile, k.vrrpPid} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "keepalived" {
			continue
		}
		k.log.Warn("vip: ending a keepalived left from an earlier run", "pid", pid, "pid_file", f)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// holds reports whether the address is on the interface.
func (k *vipKeeper) holds() (bool, error) {
	ifc, err := net.InterfaceByName(k.cfg.Interface)
	if err != nil {
		return false, fmt.Errorf("vip: interface %s: %w", k.cfg.Interface, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return false, fmt.Errorf("vip: addresses of %s: %w", k.cfg.Interface, err)
	}
	want := k.cfg.Address.Addr()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == want {
				return true, nil
			}
		}
	}
	return false, nil
}

// clear removes the address from the interface if it is there, logging
// why (a warning: something left it).
func (k *vipKeeper) clear(why string) error {
	held, err := k.holds()
	if err != nil || !held {
		return err
	}
	out, err := exec.Command("ip", "addr", "del", k.cfg.Address.String(), "dev", k.cfg.Interface).CombinedOutput()
	if err != nil {
		// Gone meanwhile (keepalived released it) is not a failure.
		if held, herr := k.holds(); herr == nil && !held {
			return nil
		}
		return fmt.Errorf("vip: remove %s from %s: %v: %s", k.cfg.Address, k.cfg.Interface, err, strings.TrimSpace(string(out)))
	}
	k.log.Warn("vip: removed a stale floating address", "address", k.cfg.Address.String(), "interface", k.cfg.Interface, "reason", why)
	return nil
}

// setState records a state keepalived reported.
func (k *vipKeeper) setState(s string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.state, k.gen = s, k.gen+1
}

func (k *vipKeeper) stateNow() (string, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state, k.gen
}

// run supervises keepalived until ctx ends: it starts it, restarts it
// (after clearing the address) when it exits, fences the address while
// keepalived is not MASTER, and at the end stops keepalived (SIGTERM,
// which releases the address) and clears the address. It returns nil
// after a stop through ctx; an error only when the address cannot be
// cleared, which leaves the node unsafe to keep running.
func (k *vipKeeper) run(ctx context.Context) error {
	// O_RDWR: the open does not wait for a writer, and the reader never
	// sees EOF when keepalived restarts.
	fifo, err := os.OpenFile(k.fifo, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("vip: open the notify FIFO: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer fifo.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		k.readStates(fifo)
	}()

	fenceCtx, stopFence := context.WithCancel(ctx)
	defer stopFence()
	wg.Add(1)
	go func() {
		defer wg.Done()
		k.fence(fenceCtx)
	}()

	wait := vipRestartMin
	for {
		started := time.Now()
		err := k.runOnce(ctx)
		k.setState("STOP")
		if cerr := k.clear("keepalived exited"); cerr != nil {
			return cerr
		}
		if ctx.Err() != nil {
			k.log.Info("vip: keepalived stopped", "address", k.cfg.Address.String())
			return nil
		}
		if time.Since(started) > vipRestartMax {
			wait = vipRestartMin
		}
		k.log.Error("vip: keepalived exited; starting it again", "error", err, "after", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, vipRestartMax)
	}
}

// runOnce runs keepalived until it exits or ctx ends (then SIGTERM, and
// SIGKILL after vipStopGrace). The goroutine that starts it keeps its OS
// thread until keepalived has exited: Pdeathsig is tied to the thread
// that forked the child, and a thread Go retired would kill it.
func (k *vipKeeper) runOnce(ctx context.Context) error {
	k.endLeftover()
	type result struct{ err error }
	done := make(chan result, 1)
	started := make(chan *os.Process, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd := exec.Command(k.keepalived, "-n", "-l", "-G", "-P", "-f", k.conf, "-p", k.pidFile, "-r", k.vrrpPid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
		cmd.Stdout = logWriter{k.log, "keepalived"}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			started <- nil
			done <- result{fmt.Errorf("start keepalived: %w", err)}
			return
		}
		started <- cmd.Process
		err := cmd.Wait()
		done <- result{err}
	}()
	p := <-started
	if p == nil {
		return (<-done).err
	}
	k.log.Info("vip: keepalived started", "pid", p.Pid, "address", k.cfg.Address.String(), "interface", k.cfg.Interface, "conf", k.conf)
	select {
	case r := <-done:
		return r.err
	case <-ctx.Done():
	}
	p.Signal(syscall.SIGTERM)
	t := time.NewTimer(vipStopGrace)
	defer t.Stop()
	select {
	case r := <-done:
		return r.err
	case <-t.C:
		k.log.Warn("vip: keepalived did not stop in time; killing it", "pid", p.Pid)
		syscall.Kill(-p.Pid, syscall.SIGKILL)
		return (<-done).err
	}
}

// readStates reads keepalived's notify FIFO until it is closed: lines
// such as `INSTANCE "shoal" MASTER 100`.
func (k *vipKeeper) readStates(f *os.File) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[0] != "INSTANCE" || strings.Trim(fields[1], `"`) != vipInstance {
			continue
		}
		k.setState(fields[2])
		k.log.Info("vip: state", "state", fields[2], "address", k.cfg.Address.String())
	}
}

// fence removes the address whenever keepalived is not MASTER and the
// address was on the interface at two checks in a row with no state
// report between them (so an address keepalived has just added, before
// its MASTER report arrives, is left alone). A removal that fails is
// logged and tried again at the next check. It returns when ctx ends.
func (k *vipKeeper) fence(ctx context.Context) {
	t := time.NewTicker(vipFenceEvery)
	defer t.Stop()
	var seenGen uint64
	seen := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		state, gen := k.stateNow()
		held, err := k.holds()
		if err != nil {
			k.log.Error("vip: fence check", "error", err)
			continue
		}
		switch {
		case state == "MASTER" || !held:
			seen = false
		case seen && seenGen == gen:
			if err := k.clear("held while keepalived is " + cmp.Or(state, "starting")); err != nil {
				k.log.Error("vip: fence", "error", err)
				continue
			}
			seen = false
		default:
			seen, seenGen = true, gen
		}
	}
}

// logWriter turns the lines a child writes into log records.
type logWriter struct {
	log  *slog.Logger
	from string
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			w.log.Info(line, "from", w.from)
		}
	}
	return len(p), nil
}
