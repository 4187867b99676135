package runtime

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync"
)

// spawnReq asks the spawner goroutine to start cmd.
type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

// spawner starts every instance process from one goroutine locked to its OS thread.
// Pdeathsig is delivered when the thread that forked the child exits; the Go runtime
// exits a thread when a goroutine locked to it returns, and may otherwise run a fork on
// any thread. Locking this goroutine for its whole life pins every fork to one thread
// that lives until Close has reaped every instance (it returns only when l.spawn is
// closed), so children die when Shoal dies and never earlier.
func (l *Local) spawner() {
	goruntime.LockOSThread() // deliberately never unlocked; see above
	defer close(l.spawnerDone)
	for req := range l.spawn {
		req.reply <- req.cmd.Start()
	}
}

// fork starts cmd on the spawner's thread.
func (l *Local) fork(ctx context.Context, cmd *exec.Cmd) error {
	reply := make(chan error, 1)
	select {
	case l.spawn <- spawnReq{cmd: cmd, reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-reply
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. The port is released before
// the instance binds it, so another process may take it in between; an instance that then
// fails to bind exits, and retrying the start (with a new port) is the caller's job.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

var simpleWord = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

// shellWords are reserved words and special builtins that cannot follow `exec`.
var shellWords = map[string]bool{
	"if": true, "then": true, "else": true, "elif": true, "fi": true, "case": true,
	"esac": true, "for": true, "while": true, "until": true, "do": true, "done": true,
	"exec": true, "function": true, "select": true, "time": true, ".": true, "cd": true,
	"export": true, "set": true, "unset": true, "eval": true, "exit": true,
	"return": true, "trap": true, "ulimit": true, "umask": true, "wait": true,
	"readonly": true, "shift": true, "alias": true, "source": true, "local": true,
}

// shellCommand returns the script given to /bin/sh -c. A simple command (one program and
// its arguments, no operators, redirections or subshells) is prefixed with `exec`, so the
// program replaces the shell: it then receives StopSignal itself, is the direct child that
// Pdeathsig kills, and its exit status is the instance's. Anything else runs as written.
func shellCommand(cmd string) string {
	cmd = strings.TrimSpace(cmd)
	if strings.ContainsAny(cmd, ";&|<>()`\n\\") {
		return cmd
	}
	first, _, _ := strings.Cut(cmd, " ")
	first, _, _ = strings.Cut(first, "\t")
	if !simpleWord.MatchString(first) || shellWords[first] || strings.Contains(first, "=") {
		return cmd
	}
	return "exec " + cmd
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)

// validID reports whether id may name an instance (and its directories).
func validID(id string) bool { return idPattern.MatchString(id) }

// exitQueue delivers Exits on a channel without ever blocking the reporting goroutine:
// it buffers without bound and a pump goroutine sends in order.
type exitQueue struct {
	mu     sync.Mutex
	q      []Exit
	closed bool
	wake   chan struct{}
	out    chan Exit
	abort  chan struct{}
	done   chan struct{}
}

func newExitQueue() *exitQueue {
	return &exitQueue{wake: make(chan struct{}, 1), out: make(chan Exit), abort: make(chan struct{}), done: make(chan struct{})}
}

func (e *exitQueue) push(x Exit) {
	e.mu.Lock()
	e.q = append(e.q, x)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run is the pump; it returns when the queue is finished and empty, or aborted.
func (e *exitQueue) run() {
	defer close(e.done)
	defer close(e.out)
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			closed := e.closed
			e.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-e.wake:
			case <-e.abort:
				return
			}
			continue
		}
		x := e.q[0]
		e.q = e.q[1:]
		e.mu.Unlock()
		select {
		case e.out <- x:
		case <-e.abort:
			return
		}
	}
}

// finish lets the pump deliver what is queued, then close the channel; if ctx ends
// first the rest is dropped. It returns how many exits were dropped.
func (e *exitQueue) finish(ctx context.Context) int {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	select {
	case <-e.done:
		return 0
	case <-ctx.Done():
	}
	close(e.abort)
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.q)
}
