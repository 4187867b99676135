package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/client"
)

// The keepalived guard: keepalived's parent, a small process of its own
// (this binary started again with SHOAL_VIP_GUARD set), so that keepalived
// can outlive one `shoal lb` and pass to the next. An upgrade of the node
// that holds the floating address must not move it: a move resets every
// connection in flight to the node (the clients' next packets go to the
// peer, which knows none of them).
//
// The guard keeps keepalived running while at least one shoal lb (an
// owner) is connected to it: on fd 3, the socket pair of the shoal lb that
// started it, or on guard.sock in the vip directory, which a starting
// shoal lb dials (openVIP) before it takes over from the running one. When
// the last owner goes (a stopping shoal lb shuts down its side; a dead
// one's socket is closed by the kernel, SIGKILL included) the guard stops
// keepalived with SIGTERM, which removes the address and sends a
// priority-0 advert so that a peer takes over at once, and exits.
// keepalived runs with Pdeathsig SIGTERM tied to the guard, so a guard
// that dies takes it down the same way. guard.lock (flock, held for the
// guard's life) keeps a second guard from running keepalived beside the
// first: a new guard waits until the old one's keepalived is gone.
//
// The guard also runs the balancer's health check (lbvip_check.go) and
// writes its result into health.track, which keepalived tracks: each
// owner tells it the admin API to check, and the newest owner's is
// checked. A guard that dies takes keepalived down with it (Pdeathsig,
// above): the address is released and a peer takes it at once. A guard
// that hangs (stopped, or starved of CPU for seconds) writes nothing, so
// keepalived keeps the last result; its owner notices the silence (no
// "alive" message for vipGuardSilence) and kills it, which again stops
// keepalived and releases the address.
//
// Messages (SOCK_SEQPACKET, one per packet), guard to owner:
//
//	started PID   keepalived runs (at connect too)
//	health FILE   this guard checks the balancer into FILE (at connect,
//	              before state; a guard of an earlier version sends none)
//	alive         every vipCheckEvery, from the guard's check loop
//	state STATE   keepalived's state, MASTER, BACKUP, FAULT (at connect too, "" before any)
//	log LINE      keepalived's output and the guard's own notes
//	exit REASON   keepalived ended; the guard exits
//	kept          answer to a leaving owner while another owner stays
//	stopped       answer to the last owner: keepalived is gone
//
// owner to guard: "reload" (keepalived.conf was rewritten: SIGHUP to
// keepalived), "check URL TOKEN" (the owner's admin API, which the health
// check asks with TOKEN), and shutdown(SHUT_WR) to leave.

// vipGuardEnv names the vip directory of a guard process; see VIPGuardMain.
const vipGuardEnv = "SHOAL_VIP_GUARD"

// vipGuardLockWait bounds a new guard's wait for the previous one's exit.
const vipGuardLockWait = 30 * time.Second

// vipMsgMax bounds one message between a guard and an owner.
const vipMsgMax = 16 << 10

// vipPaths are the files of one floating address, in its directory.
type vipPaths struct {
	dir, conf, fifo, pidFile, vrrpPid, sock, lock, track string
}

func vipPathsIn(dir string) vipPaths {
	return vipPaths{dir: dir,
		conf:    filepath.Join(dir, "keepalived.conf"),
		fifo:    filepath.Join(dir, "notify.fifo"),
		pidFile: filepath.Join(dir, "keepalived.pid"),
		vrrpPid: filepath.Join(dir, "vrrp.pid"),
		sock:    filepath.Join(dir, "guard.sock"),
		lock:    filepath.Join(dir, "guard.lock"),
		track:   filepath.Join(dir, "health.track"),
	}
}

// keepalivedArgs are keepalived's arguments: in the foreground, logging
// to the console (the guard's pipe), its pid files in the directory.
func (p vipPaths) keepalivedArgs() []string {
	return []string{"-n", "-l", "-G", "-P", "-f", p.conf, "-p", p.pidFile, "-r", p.vrrpPid}
}

// VIPGuardMain runs this process as the keepalived guard of a floating
// address when a `shoal lb` started it so (SHOAL_VIP_GUARD set, fd 3 its
// socket, the keepalived executable as the first argument), and returns
// its exit code and true; otherwise it returns false at once. main calls
// it before anything else.
func VIPGuardMain() (code int, isGuard bool) {
	dir := os.Getenv(vipGuardEnv)
	if dir == "" {
		return 0, false
	}
	// keepalived's check scripts (shoal lb check) must not be guards.
	os.Unsetenv(vipGuardEnv)
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "keepalived guard: started without the keepalived executable; only shoal lb starts guards")
		return 2, true
	}
	return runVIPGuard(vipPathsIn(dir), os.Args[1]), true
}

// vipCheckTarget is an owner's admin API, checked by the guard.
type vipCheckTarget struct {
	seq uint64
	c   *client.Client
}

// vipGuard is the guard's state; see above.
type vipGuard struct {
	paths vipPaths

	mu       sync.Mutex
	owners   map[*net.UnixConn]bool
	targets  map[*net.UnixConn]vipCheckTarget // the admin API each owner told
	seq      uint64                           // orders targets, newest last
	leaving  *net.UnixConn                    // the last owner, waiting for "stopped"
	state    string
	pid      int
	stopping bool
	lastGone chan struct{} // closed when the last owner leaves
}

func runVIPGuard(paths vipPaths, keepalived string) int {
	// Pdeathsig follows the thread that forks keepalived: this one, which
	// runs the guard to its end.
	runtime.LockOSThread()
	first, err := fileConn(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keepalived guard: fd 3 is not the owner's socket; only shoal lb starts guards:", err)
		return 2
	}
	g := &vipGuard{paths: paths, owners: map[*net.UnixConn]bool{first: true},
		targets: map[*net.UnixConn]vipCheckTarget{}, lastGone: make(chan struct{})}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.readOwner(first)
	}()
	fail := func(err error) int {
		g.broadcast("exit " + err.Error())
		g.closeOwners()
		return 1
	}
	if err := g.lock(); err != nil {
		return fail(err)
	}
	select {
	case <-g.lastGone: // the owner left while this guard waited for the lock
		g.mu.Lock()
		writeMsg(g.leaving, "stopped")
		g.mu.Unlock()
		g.closeOwners()
		return 0
	default:
	}
	// Only the lock's holder listens: a socket file left here is stale.
	os.Remove(paths.sock)
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: paths.sock, Net: "unixpacket"})
	syscall.Umask(old)
	if err != nil {
		return fail(fmt.Errorf("guard socket: %w", err))
	}
	defer ln.Close()
	g.endLeftover()
	fifo, err := os.OpenFile(paths.fifo, os.O_RDWR, 0) // O_RDWR: never EOF, no wait for a writer
	if err != nil {
		return fail(fmt.Errorf("open the notify FIFO: %w", err))
	}
	defer fifo.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.readStates(fifo)
	}()
	// The track file says healthy before keepalived reads it (a 1 left by
	// an earlier run must not fault the new keepalived).
	health := newVIPHealth(paths.track, g.checkBalancer, func(msg string) {
		g.broadcast("log keepalived guard: " + msg)
	})
	if err := health.sync(); err != nil {
		return fail(err)
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(keepalived, paths.keepalivedArgs()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	cmd.Stdout, cmd.Stderr = outW, outW
	err = cmd.Start()
	outW.Close()
	if err != nil {
		outR.Close()
		return fail(fmt.Errorf("start keepalived: %w", err))
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				g.broadcast("log " + line)
			}
		}
	}()
	g.mu.Lock()
	g.pid = cmd.Process.Pid
	g.mu.Unlock()
	g.broadcast("started " + strconv.Itoa(cmd.Process.Pid))
	checkCtx, stopCheck := context.WithCancel(context.Background())
	defer stopCheck()
	wg.Add(1)
	go func() {
		defer wg.Done()
		health.run(checkCtx, func() { g.broadcast("alive") })
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		g.accept(ln, &wg)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(term)

	var why error
	select {
	case err := <-exited:
		why = orErr(err, "keepalived exited")
	case <-g.lastGone:
	case s := <-term:
		g.broadcast("log keepalived guard: " + s.String() + "; stopping keepalived")
	}
	ln.Close() // no new owners from here on
	stopCheck()
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
	if why == nil {
		cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(vipStopGrace)
		select {
		case err := <-exited:
			why = orErr(err, "keepalived stopped")
		case <-t.C:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			why = orErr(<-exited, "keepalived killed: it did not stop in time")
		}
		t.Stop()
	}
	g.mu.Lock()
	leaving := g.leaving
	g.mu.Unlock()
	if leaving != nil {
		writeMsg(leaving, "stopped")
	}
	g.broadcast("exit " + why.Error())
	g.closeOwners()
	fifo.Close() // ends readStates
	return 0
}

// orErr is err, or a plain error what when err is nil.
func orErr(err error, what string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return errors.New(what)
}

// lock takes guard.lock, waiting (bounded) for a guard that is stopping.
func (g *vipGuard) lock() error {
	f, err := os.OpenFile(g.paths.lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("guard lock: %w", err)
	}
	// Kept open (and locked) until the process exits.
	got := make(chan error, 1)
	go func() { got <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	t := time.NewTimer(vipGuardLockWait)
	defer t.Stop()
	select {
	case err := <-got:
		if err != nil {
			return fmt.Errorf("guard lock %s: %w", g.paths.lock, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("guard lock %s: another keepalived guard still runs after %v", g.paths.lock, vipGuardLockWait)
	}
}

// endLeftover kills a keepalived still named by the pid files (the guard
// holds the lock: no other guard's keepalived runs) and removes the
// files: a pid file naming a process that is gone but not yet reaped makes
// keepalived refuse to start ("daemon is already running").
func (g *vipGuard) endLeftover() {
	for _, f := range []string{g.paths.pidFile, g.paths.vrrpPid} {
		b, err := os.ReadFile(f)
		os.Remove(f)
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
		g.broadcast(fmt.Sprintf("log keepalived guard: ending a keepalived left from an earlier run (pid %d, %s)", pid, f))
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// accept takes new owners until ln is closed: each is told keepalived's
// pid and state, then read (readOwner) in a goroutine wg counts.
func (g *vipGuard) accept(ln *net.UnixListener, wg *sync.WaitGroup) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		g.mu.Lock()
		if g.stopping {
			g.mu.Unlock()
			c.Close() // the owner starts a guard of its own, which waits for the lock
			continue
		}
		g.owners[c] = true
		pid, state := g.pid, g.state
		g.mu.Unlock()
		writeMsg(c, "started "+strconv.Itoa(pid))
		writeMsg(c, "health "+g.paths.track)
		writeMsg(c, "state "+state)
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.readOwner(c)
		}()
	}
}

// readOwner serves one owner's messages until its side ends; then the
// owner leaves: "kept" when others stay, else keepalived is stopped and
// the owner hears "stopped" once it is gone.
func (g *vipGuard) readOwner(c *net.UnixConn) {
	buf := make([]byte, vipMsgMax)
	for {
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		kind, arg, _ := strings.Cut(string(buf[:n]), " ")
		switch kind {
		case "reload":
			g.mu.Lock()
			pid := g.pid
			g.mu.Unlock()
			if pid > 0 {
				syscall.Kill(pid, syscall.SIGHUP)
				g.broadcast("log keepalived guard: keepalived.conf rewritten; keepalived reloads it")
			}
		case "check":
			url, token, _ := strings.Cut(arg, " ")
			g.mu.Lock()
			g.seq++
			g.targets[c] = vipCheckTarget{seq: g.seq, c: checkClient(url, token)}
			g.mu.Unlock()
			g.broadcast("log keepalived guard: the balancer check asks " + url)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.targets, c)
	if !g.owners[c] {
		return // closed by closeOwners
	}
	delete(g.owners, c)
	if len(g.owners) > 0 || g.stopping {
		writeMsg(c, "kept")
		c.Close()
		return
	}
	g.leaving = c
	close(g.lastGone)
}

// checkBalancer is one health check of the admin API the newest owner
// told (errNoCheckTarget before any did).
func (g *vipGuard) checkBalancer(ctx context.Context) error {
	g.mu.Lock()
	var newest vipCheckTarget
	for _, t := range g.targets {
		if t.seq > newest.seq {
			newest = t
		}
	}
	g.mu.Unlock()
	if newest.c == nil {
		return errNoCheckTarget
	}
	return newest.c.CheckBalancer(ctx)
}

// readStates reads keepalived's notify FIFO until it is closed (lines
// such as `INSTANCE "shoal" MASTER 100`) and tells every owner.
func (g *vipGuard) readStates(f *os.File) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[0] != "INSTANCE" || strings.Trim(fields[1], `"`) != vipInstance {
			continue
		}
		g.mu.Lock()
		g.state = fields[2]
		g.mu.Unlock()
		g.broadcast("state " + fields[2])
	}
}

// broadcast sends msg to every owner (a write is non-blocking in
// practice: messages are small and owners read them at once; one that
// fails is left to its reader).
func (g *vipGuard) broadcast(msg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.owners {
		writeMsg(c, msg)
	}
}

// closeOwners ends every owner's connection, the leaving one's too.
func (g *vipGuard) closeOwners() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.owners {
		c.Close()
	}
	clear(g.owners)
	clear(g.targets)
	if g.leaving != nil {
		g.leaving.Close()
	}
}

// writeMsg sends one message, bounded in time.
func writeMsg(c *net.UnixConn, msg string) error {
	if len(msg) > vipMsgMax {
		msg = msg[:vipMsgMax]
	}
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Write([]byte(msg))
	return err
}

// fileConn is descriptor fd as a Unix socket connection.
func fileConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "guard-owner")
	if f == nil {
		return nil, errors.New("no such descriptor")
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("not a Unix socket")
	}
	return uc, nil
}

// readMsg reads one message from a guard or an owner.
func readMsg(c *net.UnixConn, buf []byte) (kind, arg string, err error) {
	n, err := c.Read(buf)
	if err != nil {
		return "", "", err
	}
	if n == 0 {
		return "", "", io.EOF
	}
	kind, arg, _ = strings.Cut(string(buf[:n]), " ")
	return kind, arg, nil
}
