package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The new process's side of the listener handoff (handoff.go).

// inherited is what a new process took over from an old one. A nil
// *inherited (no old process) claims nothing; its methods do nothing.
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
	defer closeFiles(files) // net.FileListener made its own descriptor
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

// claimTCP is claim for a TCP socket; an offered socket of another family
// is an error.
func (in *inherited) claimTCP(kind, name, addr string) (*net.TCPListener, error) {
	ln := in.claim(kind, name, addr)
	if ln == nil {
		return nil, nil
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("%s socket %s %s handed over is not a TCP socket", kind, name, addr)
	}
	return tl, nil
}

// listenSelf returns the handoff socket at path: the old process's when it
// offered it, else bound anew.
func (in *inherited) listenSelf(path string) (*net.UnixListener, error) {
	ln := in.claim(handoffSelf, "", path)
	if ln == nil {
		return listenHandoff(path)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("handoff socket %s handed over is not a Unix socket", path)
	}
	return ul, nil
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

// ask sends req and reads the old process's answer.
func (in *inherited) ask(req handoffRequest) (handoffDone, error) {
	in.conn.SetDeadline(time.Now().Add(handoffWait))
	var done handoffDone
	if err := writeJSON(in.conn, req); err != nil {
		return done, fmt.Errorf("send to the old process: %w", err)
	}
	buf := make([]byte, handoffMsgMax)
	n, err := in.conn.Read(buf)
	if err == nil {
		err = json.Unmarshal(buf[:n], &done)
	}
	if err != nil {
		return done, fmt.Errorf("read the old process's answer: %w", err)
	}
	if done.Error != "" {
		return done, fmt.Errorf("the old process (pid %d): %s", done.PID, done.Error)
	}
	return done, nil
}

// release asks the old process to release what one process alone may
// hold (the server's store) and waits until it has: nothing to do
// without an old process.
func (in *inherited) release() error {
	if in == nil {
		return nil
	}
	_, err := in.ask(handoffRequest{PID: os.Getpid(), Kept: in.kept, Release: true})
	return err
}

// finish tells the old process to stop and waits for its answer; it
// returns the old process's pid.
func (in *inherited) finish() (int, error) {
	defer in.conn.Close()
	done, err := in.ask(handoffRequest{PID: os.Getpid(), Kept: in.kept})
	return done.PID, err
}

// notifyServing ends a takeover once this process serves (stopping the
// old process) and tells systemd (Type=notify) that this process is
// ready and, after a takeover, the unit's main process.
func notifyServing(in *inherited, log *slog.Logger) {
	state := "READY=1"
	if in != nil {
		pid, err := in.finish()
		if err != nil {
			// The old process stops on its own once it saw the stop, or
			// serves on beside this one: both accept on the same sockets.
			log.Warn("handoff: no answer from the old process", "old_pid", in.offer.PID, "error", err)
		} else {
			log.Info("took over", "old_pid", pid, "pid", os.Getpid(), "sockets", len(in.kept))
		}
		state = fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid())
	}
	if err := sdNotify(state); err != nil {
		log.Warn("notify systemd", "error", err)
	}
}
