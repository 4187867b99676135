package daemon

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/config"
)

// The floating address (lb.yaml's vip section). `shoal lb` runs keepalived
// through a guard process (lbvip_guard.go) and keeps the address honest
// around it:
//
//   - keepalived.conf is written into the vip's directory at every start:
//     one VRRP instance (version 3, unicast to the peers, nopreempt) that
//     tracks health.track (track_file, weight 0), which the guard keeps
//     with the result of its check of this balancer's admin API
//     (lbvip_check.go), so a balancer that stops answering puts the node
//     in FAULT and the address moves although the host is fine.
//   - keepalived's parent is the guard, which keeps it running while a
//     shoal lb is connected and stops it (SIGTERM: the address is released
//     with a priority-0 advert, so a peer takes over at once) when the
//     last one is gone, even by SIGKILL. A shoal lb that takes over from a
//     running one (handoff.go) connects to the running guard first, so
//     keepalived and the address stay where they are through an upgrade.
//   - before keepalived starts (and after it exits), the address is
//     removed from the interface if present: a keepalived killed with
//     SIGKILL (with shoal lb, or alone) leaves it configured, and two nodes
//     would answer for it. A keepalived still running from the pid file of
//     an earlier run is killed first (by the guard).
//   - fencing while keepalived runs: the guard reports keepalived's state
//     changes (its vrrp_notify_fifo); whenever the state is not MASTER and
//     the address is on the interface at two checks in a row with no state
//     change between them, the address is removed.
//
// The vipKeeper is the shoal lb's side: openVIP prepares it (adopting a
// running guard, or clearing a stale address), run supervises the guard
// until its context ends.

// vipFenceEvery is how often the address is checked against keepalived's
// state, and vipRestartMin/Max bound the wait before keepalived is started
// again after it died. vipGuardSilence is how long a running guard may
// send nothing (it sends "alive" after every check) before its owner
// takes it for hung and kills it: generous, since killing it moves the
// address, and a loaded machine can starve a process for seconds.
const (
	vipFenceEvery   = time.Second
	vipRestartMin   = time.Second
	vipRestartMax   = 30 * time.Second
	vipStopGrace    = 5 * time.Second
	vipGuardSilence = 15 * time.Second
	vipInstance     = "shoal"
)

// vipKeeper supervises keepalived for one floating address; see above.
type vipKeeper struct {
	cfg        config.LBVIP
	keepalived string // resolved executable
	self       string // this executable, started again as the guard
	paths      vipPaths
	log        *slog.Logger
	// adopted is the connection to a guard that already ran at open
	// (another shoal lb's, which this one takes over from); nil if none.
	// adoptedChecks says it runs the balancer check (and says "alive").
	adopted       *net.UnixConn
	adoptedChecks bool
	// reserved points a provider's reserved IP at this node while it is
	// MASTER (lbvip_reserved.go); nil without vip.reserved_ip.
	reserved *reservedIP
	// checkMsg tells a guard this balancer's admin API, which its health
	// check asks ("check URL TOKEN"; setCheck); "" until OpenLB bound it.
	checkMsg string
	// silence is how long a running guard may send nothing before it is
	// taken for hung; 0 means vipGuardSilence.
	silence time.Duration

	mu    sync.Mutex
	state string // keepalived's last reported state: MASTER, BACKUP, FAULT, STOP; "" before any
	gen   uint64 // counts state reports
}

// openVIP prepares the floating address of cfg: it finds keepalived,
// writes keepalived.conf (tracking the guard's health.track) and makes the
// notify FIFO. When a guard runs (the shoal lb this one takes over from)
// it connects to it, and the running keepalived reloads a changed
// keepalived.conf; otherwise it removes the address from the interface if
// it is there.
func openVIP(cfg config.LBVIP, log *slog.Logger) (*vipKeeper, error) {
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
		return nil, fmt.Errorf("vip: this program's path, for the keepalived guard: %w", err)
	}
	if strings.ContainsAny(cfg.Dir, " \t\n\"'{}#\\") {
		return nil, fmt.Errorf("vip: %q: keepalived.conf cannot name files in a directory whose path has spaces, quotes, braces or '#'", cfg.Dir)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("vip: %w", err)
	}
	k := &vipKeeper{cfg: cfg, keepalived: bin, self: self, log: log, paths: vipPathsIn(cfg.Dir)}
	if cfg.ReservedIP != nil {
		if k.reserved, err = openReservedIP(context.Background(), *cfg.ReservedIP, log); err != nil {
			return nil, err
		}
	}
	conf := []byte(keepalivedConf(cfg, k.paths))
	old, _ := os.ReadFile(k.paths.conf)
	if err := atomicfile.Write(k.paths.conf, conf, 0o600); err != nil {
		return nil, fmt.Errorf("vip: %w", err)
	}
	if fi, err := os.Lstat(k.paths.fifo); err == nil && fi.Mode()&os.ModeNamedPipe == 0 {
		return nil, fmt.Errorf("vip: %s exists and is not a FIFO", k.paths.fifo)
	} else if errors.Is(err, os.ErrNotExist) {
		if err := syscall.Mkfifo(k.paths.fifo, 0o600); err != nil {
			return nil, fmt.Errorf("vip: make the notify FIFO: %w", err)
		}
	}
	if c, checks := k.join(); c != nil {
		k.adopted, k.adoptedChecks = c, checks
		state, _ := k.stateNow()
		k.log.Info("vip: adopted the running keepalived from the shoal lb this one takes over from", "address", cfg.Address.String(), "state", state, "guard", k.paths.sock)
		if !checks {
			// A guard of an earlier shoal runs keepalived with a
			// vrrp_script of `shoal lb check`, which still works: reloading
			// keepalived.conf would make it track a file nobody writes.
			k.log.Warn("vip: the running keepalived guard is of an earlier shoal and does not run the balancer check; keepalived keeps its running configuration (a vrrp_script of `shoal lb check`) until the address is started again", "guard", k.paths.sock)
			return k, nil
		}
		if !bytes.Equal(old, conf) {
			if err := writeMsg(c, "reload"); err != nil {
				c.Close()
				return nil, fmt.Errorf("vip: ask the running keepalived to reload keepalived.conf: %w", err)
			}
		}
		return k, nil
	}
	if err := k.clear("at start, before keepalived runs"); err != nil {
		return nil, err
	}
	return k, nil
}

// keepalivedConf is the keepalived.conf of cfg with the files of p: the
// notify FIFO, and the track file of the guard's balancer check (weight
// 0: a non-zero number in it puts the instance in FAULT). keepalived runs
// no script: the guard checks in its own process (lbvip_check.go).
func keepalivedConf(cfg config.LBVIP, p vipPaths) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by shoal lb at every start; edits are lost. See lb.yaml's vip section.
global_defs {
	vrrp_version 3
	vrrp_notify_fifo %s
	vrrp_garp_master_delay 1
	vrrp_garp_master_repeat 3
	vrrp_garp_master_refresh 10
	vrrp_higher_prio_send_advert true
}

track_file shoal_lb_health {
	file "%s"
	weight 0
}

vrrp_instance %s {
	state BACKUP
	nopreempt
	interface %s
	virtual_router_id %d
	priority %d
	advert_int %s
`, p.fifo, p.track, vipInstance, cfg.Interface, cfg.RouterID, cfg.Priority,
		strconv.FormatFloat(cfg.AdvertInterval.Seconds(), 'f', -1, 64))
	if cfg.Source.IsValid() {
		fmt.Fprintf(&b, "\tunicast_src_ip %s\n", cfg.Source)
	}
	b.WriteString("\tunicast_peer {\n")
	for _, p := range cfg.Peers {
		fmt.Fprintf(&b, "\t\t%s\n", p)
	}
	fmt.Fprintf(&b, "\t}\n\tvirtual_ipaddress {\n\t\t%s dev %s\n\t}\n\ttrack_file {\n\t\tshoal_lb_health\n\t}\n}\n",
		cfg.Address, cfg.Interface)
	return b.String()
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
	k.state, k.gen = s, k.gen+1
	k.mu.Unlock()
	if k.reserved != nil {
		k.reserved.changed()
	}
}

func (k *vipKeeper) stateNow() (string, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state, k.gen
}

// join connects to a running guard and waits for its greeting (started,
// health, state), which it sends once it counts this process as an
// owner: from then on the guard keeps keepalived running even when the
// other owner leaves at once. checks reports whether the guard runs the
// balancer check (a guard of an earlier shoal does not). It returns nil
// when no guard runs, or the guard is stopping (it closes new
// connections then).
func (k *vipKeeper) join() (_ *net.UnixConn, checks bool) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: k.paths.sock, Net: "unixpacket"})
	if err != nil {
		return nil, false
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, vipMsgMax)
	for range 100 {
		kind, arg, err := readMsg(c, buf)
		if err != nil || kind == "exit" {
			break
		}
		if kind == "health" {
			checks = true
		}
		if kind == "state" {
			if arg != "" {
				k.setState(arg)
			}
			c.SetReadDeadline(time.Time{})
			return c, checks
		}
	}
	c.Close()
	return nil, false
}

// setCheck gives the guard's balancer check this balancer's admin API:
// its listener's address and the token it requires. OpenLB calls it once
// the admin API is bound, before Run.
func (k *vipKeeper) setCheck(admin net.Addr, token string) {
	k.checkMsg = "check " + checkURL(admin) + " " + token
}

// close lets go of an adopted guard when the balancer never runs: the
// shoal lb that owns it keeps it.
func (k *vipKeeper) close() {
	if k.adopted != nil {
		k.adopted.Close()
		k.adopted = nil
	}
}

// run supervises keepalived until ctx ends: it starts a guard (or
// follows the adopted one), starts it again (after clearing the address)
// when keepalived exits, fences the address while keepalived is not
// MASTER, and at the end leaves the guard: the last shoal lb to leave has
// keepalived stopped (the address released) and clears whatever is left;
// one that handed over leaves keepalived to the new process. It returns
// nil after a stop through ctx; an error only when the address cannot be
// cleared, which leaves the node unsafe to keep running.
func (k *vipKeeper) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	fenceCtx, stopFence := context.WithCancel(ctx)
	defer stopFence()
	wg.Add(1)
	go func() {
		defer wg.Done()
		k.fence(fenceCtx)
	}()
	if k.reserved != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.reserved.run(fenceCtx, k.stateNow)
		}()
	}

	wait := vipRestartMin
	for {
		started := time.Now()
		kept, err := k.runOnce(ctx)
		if kept {
			k.log.Info("vip: keepalived left running for the shoal lb that took over", "address", k.cfg.Address.String())
			return nil
		}
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

// runOnce follows one guard (the adopted one, or one it starts) until
// keepalived exits or ctx ends; then it leaves the guard and reports
// whether keepalived was kept for another shoal lb.
func (k *vipKeeper) runOnce(ctx context.Context) (kept bool, err error) {
	c, child, watch := k.adopted, (*exec.Cmd)(nil), k.adoptedChecks
	k.adopted, k.adoptedChecks = nil, false
	if c == nil {
		if c, child, err = k.startGuard(); err != nil {
			return false, err
		}
	}
	if k.checkMsg != "" {
		// A failed write is a guard gone: follow reads its end.
		writeMsg(c, k.checkMsg)
	}
	kept, err = k.follow(ctx, c, child, watch)
	if child != nil {
		if kept {
			// The guard serves the new shoal lb; this process is leaving.
			child.Process.Release()
		} else {
			// It exits once keepalived is gone; one that hangs is killed
			// (keepalived, its child, then gets SIGTERM: Pdeathsig).
			t := time.AfterFunc(vipStopGrace, func() { child.Process.Kill() })
			child.Wait()
			t.Stop()
		}
	}
	return kept, err
}

// startGuard starts a guard (this executable with SHOAL_VIP_GUARD) in a
// session of its own, so that it outlives this process when another
// takes over, and returns the connection to it.
func (k *vipKeeper) startGuard() (*net.UnixConn, *exec.Cmd, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("start the keepalived guard: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "guard")
	defer theirs.Close()
	c, err := fileConn(fds[0])
	if err != nil {
		return nil, nil, fmt.Errorf("start the keepalived guard: %w", err)
	}
	cmd := exec.Command(k.self, k.keepalived)
	cmd.Env = append(os.Environ(), vipGuardEnv+"="+k.cfg.Dir)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("start the keepalived guard: %w", err)
	}
	return c, cmd, nil
}

// follow reads the guard's messages on c until the guard ends or, once
// ctx ended and this process left (shutdown of its side), answers kept or
// stopped. A guard that runs keepalived (from its "started", or at once
// when watch is set: an adopted guard of this version) and then says
// nothing for vipGuardSilence is hung: it is killed (child, the guard
// this process started, or the peer of c), so that keepalived, tied to
// it by Pdeathsig, stops and the address moves to a peer; run starts a
// guard again. A guard of an earlier shoal says no "alive" and is not
// watched.
func (k *vipKeeper) follow(ctx context.Context, c *net.UnixConn, child *exec.Cmd, watch bool) (kept bool, err error) {
	defer c.Close()
	leave := context.AfterFunc(ctx, func() {
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(vipStopGrace + 5*time.Second))
	})
	defer leave()
	buf := make([]byte, vipMsgMax)
	exit := errors.New("the keepalived guard ended")
	for {
		if watch && ctx.Err() == nil {
			c.SetReadDeadline(time.Now().Add(cmp.Or(k.silence, vipGuardSilence)))
		}
		kind, arg, err := readMsg(c, buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if ctx.Err() != nil {
					k.log.Error("vip: the keepalived guard did not answer the stop in time", "guard", k.paths.sock)
					return false, exit
				}
				k.killGuard(c, child)
				return false, fmt.Errorf("the keepalived guard sent nothing for %v (hung); killed it", cmp.Or(k.silence, vipGuardSilence))
			}
			return false, exit
		}
		switch kind {
		case "started":
			if child != nil {
				watch = true
			}
			k.log.Info("vip: keepalived started", "pid", arg, "address", k.cfg.Address.String(), "interface", k.cfg.Interface, "conf", k.paths.conf)
		case "state":
			if arg != "" {
				k.setState(arg)
				k.log.Info("vip: state", "state", arg, "address", k.cfg.Address.String())
			}
		case "log":
			k.log.Info(arg, "from", "keepalived")
		case "exit":
			exit = errors.New(arg)
		case "kept":
			return true, nil
		case "stopped":
			return false, nil
		}
	}
}

// killGuard kills a hung guard with SIGKILL: child when this process
// started it, else the process at the other end of c (SO_PEERCRED of the
// guard's listening socket).
func (k *vipKeeper) killGuard(c *net.UnixConn, child *exec.Cmd) {
	pid := 0
	if child != nil {
		pid = child.Process.Pid
	} else if raw, err := c.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				pid = int(cred.Pid)
			}
		})
	}
	k.log.Error("vip: the keepalived guard is hung (nothing heard from it); killing it: keepalived stops with it and a peer takes the address", "guard", k.paths.sock, "pid", pid, "silence", cmp.Or(k.silence, vipGuardSilence).String())
	if pid > 1 && pid != os.Getpid() {
		syscall.Kill(pid, syscall.SIGKILL)
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
