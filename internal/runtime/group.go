package runtime

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// drainTimeout bounds how long output is still read after the instance is reaped. Only a
// process that escaped the group and holds the pipe open can make it matter.
const drainTimeout = 5 * time.Second

// group is an app's process group forked and reaped by this process: by the Local in
// the default mode, by the instance's shim in detached mode (shim.go). It owns the
// output pipe and the log, and it is the one place that observes the end, so the two
// modes stop, escalate, drain and report alike.
type group struct {
	spec     Spec
	pid      int // the direct child, leader of the group (pgid == pid)
	workDir  string
	cmd      *exec.Cmd
	log      *logFile
	out      *os.File      // read end of the output pipe
	logger   *slog.Logger  // copy errors
	copyDone chan struct{} // closed when all output is in the log
	ended    chan struct{} // closed when wait has returned
	killed   chan struct{} // closed when a stop escalates to SIGKILL
	// cgroup is the instance's cgroup directory ("" without one; set before wait
	// starts): at the end, what left the group is killed through it.
	cgroup string

	mu         sync.Mutex
	stopping   bool
	escalated  bool
	reaped     bool // after this no signal may be sent: the pgid could be reused
	killedOnce sync.Once
}

// startGroup opens the instance's log, forks `sh -c` for spec.Command with env in its own
// process group, with Pdeathsig=SIGKILL (fork must run on the thread that lives as long
// as the forking process needs the child: see spawner), into the cgroup open as cgroup
// unless it is nil, and returns the group. The
// caller then starts copyOutput and wait.
func startGroup(ctx context.Context, fork func(context.Context, *exec.Cmd) error, spec Spec,
	env []string, workDir string, logMax int64, logFiles int, logger *slog.Logger, cgroup *os.File) (*group, error) {
	lf, err := openLog(instanceLogPath(workDir), logMax, logFiles)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:   "/bin/sh",
		Args:   []string{"sh", "-c", shellCommand(spec.Command)},
		Dir:    spec.Dir,
		Env:    env, // exec keeps the last value of a duplicated key
		Stdout: pw,
		Stderr: pw,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	}
	if cgroup != nil {
		// Born in the cgroup (clone3 CLONE_INTO_CGROUP): no moment outside it.
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(cgroup.Fd())
	}
	err = fork(ctx, cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		lf.Close()
		return nil, err
	}
	return &group{
		spec: spec, pid: cmd.Process.Pid, workDir: workDir, cmd: cmd, log: lf, out: pr, logger: logger,
		copyDone: make(chan struct{}), ended: make(chan struct{}), killed: make(chan struct{}),
	}, nil
}

// abort kills and reaps a group whose start failed after the fork.
func (g *group) abort() {
	syscall.Kill(-g.pid, syscall.SIGKILL)
	g.cmd.Wait()
	g.out.Close()
	g.log.Close()
}

// copyOutput moves the process's output into its log, redacting spec.Secrets, until
// every writer is gone or the read deadline set after reaping passes.
func (g *group) copyOutput() {
	defer close(g.copyDone)
	var w io.Writer = g.log
	rw := newRedactWriter(g.log, g.spec.Secrets)
	if rw != nil {
		w = rw
	}
	_, err := io.Copy(w, g.out)
	if rw != nil {
		// Whatever ended the copy, the held partial line is the app's
		// last output: write it, redacted.
		if ferr := rw.Flush(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			err = ferr
		}
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		g.logger.Warn("copy instance output", "instance", g.spec.ID, "error", err)
	}
}

// awaitExit returns once the child pid has exited, without reaping it. It waits on a
// pidfd through Go's poller, so no thread is held while an instance runs (one blocked
// waitid per instance held one thread each); where the kernel has no pidfd_open
// (before Linux 5.3) it blocks in waitid(WNOWAIT) instead.
func awaitExit(pid int) error {
	// The child is not reaped until the caller's cmd.Wait: its pid cannot be reused, so
	// the pidfd is this child's.
	if fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK); err == nil {
		w := &pidWatch{f: os.NewFile(uintptr(fd), "pidfd "+strconv.Itoa(pid))}
		defer w.close()
		if err := w.wait(); err == nil {
			return nil
		}
	}
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// wait observes the group's end and returns its Exit (without Labels and LogTail). It
// waits for the direct child to exit without reaping it (awaitExit), so the pgid cannot be
// reused while the group is signalled; lets the rest of the group finish if a stop is in
// progress (until it escalates); SIGKILLs whatever is left of the group; reaps; drains
// the output; closes the log; removes tmp/ and stamps the folder with the end time.
func (g *group) wait() Exit {
	defer close(g.ended)
	pid := g.pid
	werr := awaitExit(pid)
	g.mu.Lock()
	stopping := g.stopping
	g.mu.Unlock()
	if stopping {
		t := time.NewTicker(20 * time.Millisecond)
	graceful:
		for groupAlive(pid) {
			select {
			case <-g.killed:
				break graceful
			case <-t.C:
			}
		}
		t.Stop()
	}
	g.mu.Lock()
	syscall.Kill(-pid, syscall.SIGKILL) // stragglers; the unreaped leader pins the pgid
	g.reaped = true
	g.mu.Unlock()
	err := g.cmd.Wait()
	if werr == nil {
		werr = err
	}
	if g.cgroup != "" {
		// Processes that left the group (and may hold the output pipe) end too.
		killCgroup(g.cgroup)
	}
	g.out.SetReadDeadline(time.Now().Add(drainTimeout))
	<-g.copyDone
	g.out.Close()
	g.log.Close()
	os.RemoveAll(filepath.Join(g.workDir, "tmp"))
	markEnded(g.workDir, time.Now())

	g.mu.Lock()
	x := Exit{ID: g.spec.ID, PID: pid, Code: -1, Stopped: g.stopping, Killed: g.escalated, At: time.Now()}
	g.mu.Unlock()
	if ps := g.cmd.ProcessState; ps != nil {
		ws := ps.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			x.Signal = unix.SignalName(ws.Signal())
		} else {
			x.Code = ws.ExitStatus()
		}
	} else if werr != nil {
		x.Err = werr.Error()
	}
	return x
}

// signalStop sends the stop signal to the group, once, unless it is already reaped.
func (g *group) signalStop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	first := !g.stopping
	g.stopping = true
	if first && !g.reaped {
		syscall.Kill(-g.pid, g.spec.stopSignal())
	}
}

// kill escalates a stop: SIGKILL to the group (unless reaped) and no more grace for the
// rest of the group once the leader is gone.
func (g *group) kill() {
	g.mu.Lock()
	g.stopping = true
	if !g.reaped {
		g.escalated = true
		syscall.Kill(-g.pid, syscall.SIGKILL)
	}
	g.mu.Unlock()
	g.killedOnce.Do(func() { close(g.killed) })
}

// stop sends the stop signal, waits for the group's end for up to spec.StopTimeout (or
// until ctx ends), then kills the group, and returns once wait has returned. Concurrent
// stops are fine; the signal is sent once.
func (g *group) stop(ctx context.Context) {
	g.signalStop()
	t := time.NewTimer(g.spec.stopTimeout())
	defer t.Stop()
	select {
	case <-g.ended:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	g.kill()
	<-g.ended
}
