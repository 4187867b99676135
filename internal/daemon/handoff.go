package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/lb"
)

// Listener handoff, shared by `shoal lb` and `shoal server`: a starting
// daemon that finds a running one on its handoff socket (lb: .shoal/
// handoff.sock next to lb.yaml; server: handoff.sock in data_dir) takes
// over its listening sockets instead of binding them, so that no
// connection is refused while one process replaces the other (HAProxy's
// seamless reload, Envoy's hot restart).
//
// The exchange, over a SOCK_SEQPACKET Unix socket (one message each):
//
//  1. new connects; old answers with a handoffOffer naming every socket
//     it listens on (each balancer listener, the admin API, the server's
//     fleet port, the handoff socket itself), their descriptors attached
//     (SCM_RIGHTS).
//  2. (server only) new sends a handoffRequest with Release: old stops
//     what only one process may run (the server: its controllers, leaving
//     every instance running, the fleet, the admin and fleet servers, and
//     the store, whose file lock the new process needs) while its balancer
//     serves on with its last targets, and answers handoffDone. The
//     connections that reach the admin and fleet sockets meanwhile wait
//     in their backlog for the new process.
//  3. new builds its daemon on the sockets whose kind, name and address
//     are unchanged (binding the others anew, closing the rest), and once
//     it serves sends a handoffRequest naming those it kept (the stop).
//  4. old answers handoffDone and stops accepting, drains its in-flight
//     requests and WebSockets (its shutdown, bounded by
//     limits.shutdown_timeout) and exits.
//
// Until step 2 (or 4 without it) old serves as before: a new process that
// fails (an invalid file, a port it cannot bind, a crash) leaves it
// serving; the sockets it was given are its own descriptors and closing
// them changes nothing. After a release old cannot take its store back: it
// serves its balancer with the last targets and keeps its handoff socket,
// so the next start takes over from it.
//
//	old:  serving --offer--> offered --release--> released --stop--> draining --> exit
//	         ^                  |                    |
//	         +--new abandons----+                    +--new abandons--> balancer only, offers again

const (
	handoffVersion = 1
	// handoffMaxSockets bounds the descriptors of one offer.
	handoffMaxSockets = 250
	// handoffMsgMax bounds one message of the exchange.
	handoffMsgMax = 64 << 10
	// handoffWait bounds how long an old process waits for the new one to
	// finish starting (a balancer node's join to its server takes up to a
	// minute; a server adopts its apps' instances), and a new one for an
	// answer.
	handoffWait = 2 * time.Minute
	// Kinds of handed-over sockets.
	handoffListener = "listener"
	handoffAdmin    = "admin"
	handoffFleet    = "fleet"
	handoffSelf     = "handoff"
)

// handoffSocket names one descriptor of an offer.
type handoffSocket struct {
	Kind string `json:"kind"`
	// Name is the balancer listener's name (kind listener).
	Name string `json:"name,omitempty"`
	// Addr is the configured address: lb.yaml's listen, the admin
	// socket's path, server.yaml's admin.listen or fleet.listen.
	Addr string `json:"addr"`
}

// handoffOffer is the old process's first message.
type handoffOffer struct {
	Version int             `json:"version"`
	PID     int             `json:"pid"`
	Sockets []handoffSocket `json:"sockets"`
}

// handoffRequest is the new process's message: with Release, release
// what one process alone may hold and answer; without, stop (the new
// process serves). Kept holds the indexes (into the offer's Sockets) of
// the sockets the new process listens on.
type handoffRequest struct {
	PID     int   `json:"pid"`
	Kept    []int `json:"kept"`
	Release bool  `json:"release,omitempty"`
}

// handoffDone is the old process's answer to a handoffRequest; Error says
// why a release failed (old then serves on as before).
type handoffDone struct {
	PID   int    `json:"pid"`
	Error string `json:"error,omitempty"`
}

// handoffOwner is a daemon's part in the old process's side of a
// takeover. Its methods are called from the handoff socket's goroutine,
// one takeover at a time.
type handoffOwner interface {
	// handoffSockets returns the daemon's listening sockets other than
	// the handoff socket, each with a new descriptor that the caller
	// closes.
	handoffSockets() ([]handoffSocket, []*os.File, error)
	// releaseForHandoff stops what only one process may run while the
	// balancer serves on, and returns once it is released (at once when
	// it already was). An error leaves the daemon serving as before.
	releaseForHandoff(ctx context.Context) error
	// handedOver stops the daemon (its Run drains and returns): the new
	// process newPID serves on the sockets of kept.
	handedOver(newPID int, kept []handoffSocket)
}

// handoffServer is the old process's side: it accepts takeovers on the
// handoff socket until the socket is closed or one succeeds.
type handoffServer struct {
	ln    *net.UnixListener
	path  string
	log   *slog.Logger
	owner handoffOwner
}

// serve accepts takeovers until h.ln is closed (by a successful one, or
// by the daemon's stop).
func (h *handoffServer) serve(ctx context.Context) {
	for {
		c, err := h.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				h.log.Error("handoff socket stopped", "error", err)
			}
			return
		}
		if h.handOver(ctx, c) {
			h.ln.Close()
			return
		}
	}
}

// handOver runs the old process's side of one takeover on c and reports
// whether it handed over. Any failure of the new process leaves this one
// serving.
func (h *handoffServer) handOver(ctx context.Context, c *net.UnixConn) bool {
	defer c.Close()
	offer, files, err := h.offer()
	if err != nil {
		h.log.Error("handoff refused", "error", err)
		return false
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
		h.log.Error("handoff failed; serving on", "error", err)
		return false
	}
	h.log.Info("handoff offered", "sockets", len(offer.Sockets))
	// Wait for the new process's requests (or its failure); stop with ctx.
	stopWatch := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stopWatch()
	released := false
	for {
		// Each step of the new process gets handoffWait: a server's
		// start after the release (store, apps, adoption) is one.
		c.SetDeadline(time.Now().Add(handoffWait))
		req, err := readRequest(c)
		if err != nil {
			switch {
			case ctx.Err() != nil:
			case released:
				h.log.Error("handoff abandoned by the new process after this one released its state; serving the balancer with its last targets until a new process takes over", "error", err)
			default:
				h.log.Warn("handoff abandoned by the new process; serving on", "error", err)
			}
			return false
		}
		if req.Release {
			done := handoffDone{PID: os.Getpid()}
			if err := h.owner.releaseForHandoff(ctx); err != nil {
				done.Error = err.Error()
				h.log.Error("handoff: release failed; serving on", "error", err)
			} else {
				released = true
				h.log.Info("released for the new process", "new_pid", req.PID)
			}
			if err := writeJSON(c, done); err != nil || done.Error != "" {
				return false
			}
			continue
		}
		var kept []handoffSocket
		for _, i := range req.Kept {
			if i < 0 || i >= len(offer.Sockets) {
				continue
			}
			if offer.Sockets[i].Kind == handoffSelf {
				// The new process serves on it: never unlink.
				h.ln.SetUnlinkOnClose(false)
				continue
			}
			kept = append(kept, offer.Sockets[i])
		}
		if err := writeJSON(c, handoffDone{PID: os.Getpid()}); err != nil {
			// The new process died after its stop: serve on.
			h.ln.SetUnlinkOnClose(true)
			h.log.Warn("handoff abandoned by the new process; serving on", "error", err)
			return false
		}
		h.log.Info("handed over; draining", "new_pid", req.PID)
		h.owner.handedOver(req.PID, kept)
		return true
	}
}

// offer lists the owner's sockets and the handoff socket, with a
// descriptor of each (the caller closes them).
func (h *handoffServer) offer() (handoffOffer, []*os.File, error) {
	offer := handoffOffer{Version: handoffVersion, PID: os.Getpid()}
	socks, files, err := h.owner.handoffSockets()
	if err != nil {
		return offer, nil, err
	}
	f, err := h.ln.File()
	if err != nil {
		closeFiles(files)
		return offer, nil, fmt.Errorf("handoff socket: %w", err)
	}
	offer.Sockets = append(socks, handoffSocket{Kind: handoffSelf, Addr: h.path})
	files = append(files, f)
	if len(files) > handoffMaxSockets {
		closeFiles(files)
		return offer, nil, fmt.Errorf("%d sockets to hand over; at most %d", len(files), handoffMaxSockets)
	}
	return offer, files, nil
}

// balancerSockets returns b's listening sockets (kind listener), each
// with a new descriptor that the caller closes.
func balancerSockets(b *lb.Balancer) ([]handoffSocket, []*os.File, error) {
	socks, err := b.Sockets()
	if err != nil {
		return nil, nil, err
	}
	out := make([]handoffSocket, 0, len(socks))
	files := make([]*os.File, 0, len(socks))
	for _, s := range socks {
		out = append(out, handoffSocket{Kind: handoffListener, Name: s.Name, Addr: s.Addr})
		files = append(files, s.File)
	}
	return out, files, nil
}

// listenerFile is a listener whose descriptor can be duplicated.
type listenerFile interface{ File() (*os.File, error) }

// socketFiles returns a descriptor of each listener of socks (the same
// length), or an error naming the one that has none; on error no file
// is left open.
func socketFiles(socks []handoffSocket, lns []net.Listener) ([]*os.File, error) {
	var files []*os.File
	for i, ln := range lns {
		fl, ok := ln.(listenerFile)
		if !ok {
			closeFiles(files)
			return nil, fmt.Errorf("%s socket %s has no descriptor", socks[i].Kind, socks[i].Addr)
		}
		f, err := fl.File()
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("%s socket %s: %w", socks[i].Kind, socks[i].Addr, err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func readRequest(c *net.UnixConn) (handoffRequest, error) {
	var req handoffRequest
	buf := make([]byte, handoffMsgMax)
	n, err := c.Read(buf)
	if err == nil {
		err = json.Unmarshal(buf[:n], &req)
	}
	return req, err
}

func writeJSON(c *net.UnixConn, v any) error {
	msg, _ := json.Marshal(v)
	_, err := c.Write(msg)
	return err
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
			return nil, fmt.Errorf("handoff socket %s is in use: another process runs from this directory", path)
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

// watchUpgrade starts this binary again on every signal from usr2
// (SIGUSR2, nginx's binary upgrade signal) until ctx ends, with this
// process's arguments and environment: the new process takes over from
// this one (the executable's file as it is now, so a binary replaced on
// disk is the one that runs). A new process that exits before its
// takeover is logged; this one serves on.
func watchUpgrade(ctx context.Context, usr2 <-chan os.Signal, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-usr2:
		}
		exe, err := os.Executable()
		if err != nil {
			log.Error("upgrade: find the executable", "error", err)
			continue
		}
		cmd := exec.Command(exe, os.Args[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			log.Error("upgrade: start the new process", "exe", exe, "error", err)
			continue
		}
		log.Info("upgrade: new process started", "exe", exe, "new_pid", cmd.Process.Pid)
		// Reaps the child should it end while this process runs; not
		// waited for by Run (the new process outlives this one).
		go func() {
			if err := cmd.Wait(); err != nil {
				log.Error("upgrade: the new process exited", "new_pid", cmd.Process.Pid, "error", err)
			}
		}()
	}
}
