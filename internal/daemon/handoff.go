package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Listener handoff: a starting `shoal lb` that finds a running one (on
// the handoff socket, .shoal/handoff.sock next to lb.yaml) takes over its
// listening sockets instead of binding them, so that no connection is
// refused while one process replaces the other (HAProxy's seamless
// reload, Envoy's hot restart).
//
// The exchange, over a SOCK_SEQPACKET Unix socket (one message each):
//
//  1. new connects; old answers with a handoffOffer naming every socket
//     it listens on (each balancer listener, the admin API, the handoff
//     socket itself), their descriptors attached (SCM_RIGHTS).
//  2. new builds its balancer on the sockets whose name and address are
//     unchanged (binding the others anew, closing the rest), and once it
//     accepts on every listener sends a handoffStop naming those it kept.
//  3. old answers handoffDone and stops accepting, drains its in-flight
//     requests and WebSockets (its shutdown, bounded by
//     limits.shutdown_timeout) and exits.
//
// Until step 3 old serves as before: a new process that fails (an invalid
// lb.yaml, a port it cannot bind, a crash) leaves it serving; the sockets
// it was given are its own descriptors and closing them changes nothing.

const (
	handoffVersion = 1
	// handoffMaxSockets bounds the descriptors of one offer.
	handoffMaxSockets = 250
	// handoffMsgMax bounds one message of the exchange.
	handoffMsgMax = 64 << 10
	// handoffWait bounds how long an old process waits for the new one to
	// finish starting (a balancer node's join to its server takes up to a
	// minute), and a new one for an answer.
	handoffWait = 2 * time.Minute
	// Kinds of handed-over sockets.
	handoffListener = "listener"
	handoffAdmin    = "admin"
	handoffSelf     = "handoff"
)

// handoffSocket names one descriptor of an offer.
type handoffSocket struct {
	Kind string `json:"kind"`
	// Name is the balancer listener's name (kind listener).
	Name string `json:"name,omitempty"`
	// Addr is the configured address: lb.yaml's listen, or the admin
	// socket's path.
	Addr string `json:"addr"`
}

// handoffOffer is the old process's first message.
type handoffOffer struct {
	Version int             `json:"version"`
	PID     int             `json:"pid"`
	Sockets []handoffSocket `json:"sockets"`
}

// handoffStop is the new process's message once it serves: the old one
// stops. Kept holds the indexes (into the offer's Sockets) of the sockets
// the new process listens on.
type handoffStop struct {
	PID  int   `json:"pid"`
	Kept []int `json:"kept"`
}

// handoffDone is the old process's answer to handoffStop.
type handoffDone struct {
	PID int `json:"pid"`
}

// HandoffSocketPath returns the handoff socket of the balancer that runs
// from the lb.yaml at cfgPath: .shoal/handoff.sock next to it.
func HandoffSocketPath(cfgPath string) string {
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		abs = cfgPath
	}
	return filepath.Join(filepath.Dir(abs), ".shoal", "handoff.sock")
}

// inherited is what a new process took over from an old one.
type inherited struct {
	conn  *net.UnixConn
	offer handoffOffer
	lns   []net.Listener // by offer index; nil once claimed or closed
	kept  []int
}

// takeover asks the process serving on the handoff socket path for its
// sockets. It returns nil, nil when no process serves there (no socket,
// or a stale one).
func takeover(path string) (*inherited, error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	c, err := net.DialTimeout("unixpacket", path, 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			return nil, nil // stale: its process is gone
		}
		return nil, fmt.Errorf("handoff socket %s: %w", path, err)
	}
	conn := c.(*net.UnixConn)
	in := &inherited{conn: conn}
	if err := in.readOffer(); err != nil {
		in.close()
		return nil, fmt.Errorf("handoff socket %s: %w", path, err)
	}
	return in, nil
}

func (in *inherited) readOffer() error {
	in.conn.SetDeadline(time.Now().Add(handoffWait))
	buf := make([]byte, handoffMsgMax)
	oob := make([]byte, unix.CmsgSpace(4*handoffMaxSockets))
	n, oobn, flags, _, err := in.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return fmt.Errorf("read the offer: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return fmt.Errorf("read the offer: %w", err)
		}
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err != nil {
				return fmt.Errorf("read the offer: %w", err)
			}
			fds = append(fds, got...)
		}
	}
	// Own every descriptor received before anything can fail.
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		unix.CloseOnExec(fd)
		files[i] = os.NewFile(uintptr(fd), "handoff-"+strconv.Itoa(i))
	}
	defer func() {
		for _, f := range files {
			f.Close() // net.FileListener made its own descriptor
		}
	}()
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return errors.New("read the offer: message truncated")
	}
	if err := json.Unmarshal(buf[:n], &in.offer); err != nil {
		return fmt.Errorf("read the offer: %w", err)
	}
	if in.offer.Version != handoffVersion {
		return fmt.Errorf("the running process speaks handoff version %d, this one %d", in.offer.Version, handoffVersion)
	}
	if len(files) != len(in.offer.Sockets) {
		return fmt.Errorf("the offer names %d sockets and carries %d", len(in.offer.Sockets), len(files))
	}
	in.lns = make([]net.Listener, len(files))
	for i, f := range files {
		ln, err := net.FileListener(f)
		if err != nil {
			return fmt.Errorf("socket %d (%s %s): %w", i, in.offer.Sockets[i].Kind, in.offer.Sockets[i].Addr, err)
		}
		in.lns[i] = ln
	}
	return nil
}

// claim returns the offered socket of kind whose name and address are
// name and addr, or nil; a claimed socket is the caller's.
func (in *inherited) claim(kind, name, addr string) net.Listener {
	if in == nil {
		return nil
	}
	for i, s := range in.offer.Sockets {
		if in.lns[i] != nil && s.Kind == kind && s.Name == name && s.Addr == addr {
			ln := in.lns[i]
			in.lns[i] = nil
			in.kept = append(in.kept, i)
			return ln
		}
	}
	return nil
}

// closeUnclaimed closes the offered sockets nobody claimed: the old
// process's own descriptors keep them open until it exits.
func (in *inherited) closeUnclaimed() {
	if in == nil {
		return
	}
	for i, ln := range in.lns {
		if ln != nil {
			ln.Close()
			in.lns[i] = nil
		}
	}
}

// close abandons the takeover: unclaimed sockets and the connection are
// closed, which tells the old process to serve on.
func (in *inherited) close() {
	if in == nil {
		return
	}
	in.closeUnclaimed()
	in.conn.Close()
}

// finish tells the old process to stop and waits for its answer; it
// returns the old process's pid.
func (in *inherited) finish() (int, error) {
	defer in.conn.Close()
	in.conn.SetDeadline(time.Now().Add(handoffWait))
	msg, _ := json.Marshal(handoffStop{PID: os.Getpid(), Kept: in.kept})
	if _, err := in.conn.Write(msg); err != nil {
		return 0, fmt.Errorf("send stop: %w", err)
	}
	buf := make([]byte, handoffMsgMax)
	n, err := in.conn.Read(buf)
	if err != nil {
		return 0, fmt.Errorf("read the answer to stop: %w", err)
	}
	var done handoffDone
	if err := json.Unmarshal(buf[:n], &done); err != nil {
		return 0, fmt.Errorf("read the answer to stop: %w", err)
	}
	return done.PID, nil
}

// listenHandoff binds the handoff socket at path (mode 0600), replacing a
// stale one.
func listenHandoff(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("handoff socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("handoff socket %s: the file exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unixpacket", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("handoff socket %s is in use: another balancer runs from this directory", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale handoff socket: %w", err)
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("handoff socket: %w", err)
	}
	return ln, nil
}

// serveHandoff accepts takeovers on d.handoffLn until it is closed.
func (d *LB) serveHandoff(ctx context.Context) {
	for {
		c, err := d.handoffLn.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				d.log.Error("handoff socket stopped", "error", err)
			}
			return
		}
		d.handOver(ctx, c)
	}
}

// handOver runs the old process's side of one takeover on c: offer the
// sockets, wait for the new process to serve, then stop. Any failure of
// the new process leaves this one serving.
func (d *LB) handOver(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	offer, files, err := d.offer()
	if err != nil {
		d.log.Error("handoff refused", "error", err)
		return
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	msg, _ := json.Marshal(offer)
	c.SetDeadline(time.Now().Add(handoffWait))
	_, _, err = c.WriteMsgUnix(msg, unix.UnixRights(fds...), nil)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		d.log.Error("handoff failed; serving on", "error", err)
		return
	}
	d.log.Info("handoff offered", "sockets", len(offer.Sockets))
	// Wait for the new process to serve (or to fail); stop with ctx.
	stopWatch := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stopWatch()
	buf := make([]byte, handoffMsgMax)
	n, err := c.Read(buf)
	var stop handoffStop
	if err == nil {
		err = json.Unmarshal(buf[:n], &stop)
	}
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("handoff abandoned by the new process; serving on", "error", err)
		}
		return
	}
	// Sockets the new process kept must outlive this one: never unlink.
	for _, i := range stop.Kept {
		if i < 0 || i >= len(offer.Sockets) {
			continue
		}
		switch offer.Sockets[i].Kind {
		case handoffAdmin:
			if ul, ok := d.adminLn.(*net.UnixListener); ok {
				ul.SetUnlinkOnClose(false)
			}
		case handoffSelf:
			d.handoffLn.SetUnlinkOnClose(false)
		}
	}
	out, _ := json.Marshal(handoffDone{PID: os.Getpid()})
	if _, err := c.Write(out); err != nil {
		// The new process died after its stop: serve on.
		d.log.Warn("handoff abandoned by the new process; serving on", "error", err)
		return
	}
	d.log.Info("handed over; draining", "new_pid", stop.PID)
	d.stop()
}

// offer lists the sockets this process listens on, with a descriptor of
// each (the caller closes them).
func (d *LB) offer() (handoffOffer, []*os.File, error) {
	offer := handoffOffer{Version: handoffVersion, PID: os.Getpid()}
	socks, err := d.b.Sockets()
	if err != nil {
		return offer, nil, err
	}
	var files []*os.File
	for _, s := range socks {
		offer.Sockets = append(offer.Sockets, handoffSocket{Kind: handoffListener, Name: s.Name, Addr: s.Addr})
		files = append(files, s.File)
	}
	fail := func(err error) (handoffOffer, []*os.File, error) {
		for _, f := range files {
			f.Close()
		}
		return offer, nil, err
	}
	type filer interface{ File() (*os.File, error) }
	for _, x := range []struct {
		kind, addr string
		ln         net.Listener
	}{{handoffAdmin, d.adminAddr, d.adminLn}, {handoffSelf, d.handoffPath, d.handoffLn}} {
		fl, ok := x.ln.(filer)
		if !ok {
			return fail(fmt.Errorf("%s socket has no descriptor", x.kind))
		}
		f, err := fl.File()
		if err != nil {
			return fail(fmt.Errorf("%s socket: %w", x.kind, err))
		}
		offer.Sockets = append(offer.Sockets, handoffSocket{Kind: x.kind, Addr: x.addr})
		files = append(files, f)
	}
	if len(files) > handoffMaxSockets {
		return fail(fmt.Errorf("%d sockets to hand over; at most %d", len(files), handoffMaxSockets))
	}
	return offer, files, nil
}

// ready waits until the balancer accepts on every listener, then stops
// the old process of a takeover and tells systemd (Type=notify) that this
// process is ready and, after a takeover, the unit's main process. If Run
// ends first, an old process serves on.
func (d *LB) ready(ctx context.Context) {
	select {
	case <-d.b.Serving():
	case <-ctx.Done():
		d.inh.close()
		return
	}
	state := "READY=1"
	if d.inh != nil {
		pid, err := d.inh.finish()
		if err != nil {
			// The old process stops on its own once it saw the stop, or
			// serves on beside this one: both accept on the same sockets.
			d.log.Warn("handoff: no answer from the old process", "old_pid", d.inh.offer.PID, "error", err)
		} else {
			d.log.Info("took over", "old_pid", pid, "pid", os.Getpid(), "sockets", len(d.inh.kept))
		}
		state = fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid())
	}
	if err := sdNotify(state); err != nil {
		d.log.Warn("notify systemd", "error", err)
	}
}

// watchUpgrade starts this binary again on SIGUSR2 (nginx's binary
// upgrade signal), with this process's arguments and environment: the new
// process takes over from this one (the executable's file as it is now,
// so a binary replaced on disk is the one that runs). A new process that
// exits before its takeover is logged; this one serves on.
func (d *LB) watchUpgrade(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.usr2:
		}
		exe, err := os.Executable()
		if err != nil {
			d.log.Error("upgrade: find the executable", "error", err)
			continue
		}
		cmd := exec.Command(exe, os.Args[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			d.log.Error("upgrade: start the new process", "exe", exe, "error", err)
			continue
		}
		d.log.Info("upgrade: new process started", "exe", exe, "new_pid", cmd.Process.Pid)
		// Reaps the child should it end while this process runs; not
		// waited for by Run (the new process outlives this one).
		go func() {
			if err := cmd.Wait(); err != nil {
				d.log.Error("upgrade: the new process exited", "new_pid", cmd.Process.Pid, "error", err)
			}
		}()
	}
}
