package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The Local's side of detached mode (the shim's is shim.go): it starts shims, watches
// each with a pidfd, talks to it over its control socket, reads the end it records, and
// finds the shims of a previous run again (Adopt, adopt.go; the pidfd is pidfd.go).

// shimStartTimeout bounds a shim's start when Start's ctx has no earlier deadline.
const shimStartTimeout = 30 * time.Second

// shimGrace is how long after the stop timeout a Local waits for a shim that should
// have escalated on its own before it escalates itself.
const shimGrace = 5 * time.Second

// selfExe names the running executable: the shim is this very binary even when an
// upgrade has replaced the file on disk (os.Executable would then name a deleted file
// or the new binary).
const selfExe = "/proc/self/exe"

// errShimGone is returned (wrapped) when a shim's control socket does not answer.
var errShimGone = errors.New("shim does not answer")

// shimHandle is a Local's hold on the shim of one detached instance.
type shimHandle struct {
	cmd   *exec.Cmd // the shim, when this Local started it (its parent must reap it); nil once adopted
	watch *pidWatch
	rec   pidRecord // the instance's pid record, Shim set
}

// startDetached starts a shim for spec and returns once the shim has started the app
// and written its pid record.
func (l *Local) startDetached(ctx context.Context, spec Spec) (*instance, error) {
	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("release dir %q is not a directory", spec.Dir)
	}
	// A record left by a previous run that nobody adopted or cleaned names a shim that
	// may still run this id, in this folder.
	if _, err := os.Lstat(l.pidPath(spec.ID)); !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("a previous run left a pid record for this id (Adopt first): %w", ErrExists)
	}
	work, err := l.prepareWork(spec.ID)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(work, exitFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pick port: %w", err)
	}
	rec := pidRecord{Version: pidRecordVersion, ID: spec.ID, BootID: bootID(), Shim: &shimRecord{
		Port: port, Dir: spec.Dir, Command: spec.Command, StartedAt: time.Now(),
		Labels: maps.Clone(spec.Labels), StopTimeout: spec.stopTimeout(),
	}}
	cfg := shimConfig{Spec: spec, Env: instanceEnv(spec, port, work), WorkDir: work,
		LogMax: l.logMax, LogFiles: l.logFiles, Record: rec, RecordPath: l.pidPath(spec.ID)}
	ctx, cancel := context.WithTimeout(ctx, shimStartTimeout)
	defer cancel()
	sh, err := l.spawnShim(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &instance{info: sh.rec.info(work), shim: sh, done: make(chan struct{})}, nil
}

// spawnShim starts the shim, hands it cfg and waits for its status. On failure nothing
// it started is left running and no record is left.
func (l *Local) spawnShim(ctx context.Context, cfg shimConfig) (*shimHandle, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return nil, err
	}
	defer stR.Close()
	shimLog, err := os.OpenFile(filepath.Join(cfg.WorkDir, shimLogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, logMode)
	if err != nil {
		cfgR.Close()
		stW.Close()
		return nil, err
	}
	// The shim gets no environment of this process but the Go runtime's own
	// settings (a race-enabled test binary as shim honours GORACE).
	env := []string{shimEnv + "=1"}
	for _, k := range []string{"GORACE", "GOTRACEBACK"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	cmd := &exec.Cmd{
		Path: selfExe, Args: []string{os.Args[0]}, Env: env, Dir: "/",
		Stderr: shimLog, ExtraFiles: []*os.File{cfgR, stW},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	cfgR.Close()
	stW.Close()
	shimLog.Close()
	if err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	fail := func(err error) (*shimHandle, error) {
		cmd.Process.Kill()
		cmd.Wait()
		// The shim may have started the app and written the record before it died.
		if b, rerr := os.ReadFile(cfg.RecordPath); rerr == nil {
			if rec, perr := parsePidRecord(b); perr == nil {
				cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				l.killLeftover(cctx, rec, bootID())
				cancel()
			}
			os.Remove(cfg.RecordPath)
		}
		if tail := readLogTail(filepath.Join(cfg.WorkDir, shimLogName), 5); tail != "" {
			err = fmt.Errorf("%w (shim.log: %s)", err, tail)
		}
		return nil, fmt.Errorf("start shim: %w", err)
	}
	stopDeadline := context.AfterFunc(ctx, func() {
		cfgW.SetWriteDeadline(time.Unix(1, 0))
		stR.SetReadDeadline(time.Unix(1, 0))
	})
	defer stopDeadline()
	if err := json.NewEncoder(cfgW).Encode(cfg); err != nil {
		return fail(fmt.Errorf("send config: %w", err))
	}
	cfgW.Close()
	var st shimStatus
	if err := json.NewDecoder(io.LimitReader(stR, 64<<10)).Decode(&st); err != nil {
		return fail(fmt.Errorf("read status: %w", err))
	}
	if st.Error != "" {
		return fail(errors.New(st.Error))
	}
	self, err := readStat(cmd.Process.Pid) // our unreaped child: it cannot be reused
	if err != nil {
		return fail(err)
	}
	watch, err := watchPid(cmd.Process.Pid, self.StartTime)
	if err != nil {
		return fail(err)
	}
	rec := cfg.Record
	rec.PID, rec.PGID, rec.StartTicks = st.PID, st.PID, st.StartTicks
	rec.Shim.PID, rec.Shim.StartTicks = cmd.Process.Pid, self.StartTime
	return &shimHandle{cmd: cmd, watch: watch, rec: rec}, nil
}

// watchShim waits for the end of an instance's shim and reports the instance's Exit,
// or, when Close cancels the watch, lets go of the instance, which keeps running.
func (l *Local) watchShim(inst *instance) {
	defer l.procs.Done()
	sh := inst.shim
	err := sh.watch.wait()
	if err == nil && sh.cmd == nil {
		// An adopted shim is normally init's child; if this process started it under
		// an earlier Local, it is ours and would stay a zombie.
		sh.watch.reap()
	}
	sh.watch.close()
	if err != nil {
		if sh.cmd != nil {
			sh.cmd.Process.Release()
		}
		select {
		case <-l.closing:
		default:
			l.log.Error("lost the watch of an instance's shim; the instance runs unwatched until a restart adopts it",
				"instance", inst.info.ID, "error", err)
		}
		l.mu.Lock()
		delete(l.insts, inst.info.ID)
		l.mu.Unlock()
		return
	}
	if sh.cmd != nil {
		sh.cmd.Wait() // it has exited: this reaps it
	}
	x := l.shimExit(sh.rec)
	os.Remove(filepath.Join(inst.info.WorkDir, ctlSockName))
	if err := os.Remove(l.pidPath(inst.info.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.log.Warn("remove pid record", "instance", inst.info.ID, "error", err)
	}
	l.report(inst, x)
}

// shimExit returns the end that the shim of rec recorded. A shim that ended without
// recording one was killed: its app's leader died with it (Pdeathsig), and the rest of
// the group is killed here.
func (l *Local) shimExit(rec pidRecord) Exit {
	work := l.workDir(rec.ID)
	x, err := readExitRecord(work, rec)
	if err == nil {
		return x
	}
	l.log.Warn("an instance's shim ended without recording the instance's end", "instance", rec.ID, "error", err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if kerr := l.killLeftover(ctx, rec, bootID()); kerr != nil {
		l.log.Warn("kill the rest of the instance's group", "instance", rec.ID, "error", kerr)
	}
	os.RemoveAll(filepath.Join(work, "tmp"))
	markEnded(work, time.Now())
	return Exit{ID: rec.ID, PID: rec.PID, Code: -1, At: time.Now(),
		Err: fmt.Sprintf("shim ended without recording the instance's end: %v", err)}
}

// stopDetached asks the shim to stop the instance, escalates when ctx ends (or when the
// shim fails to end in time), and returns once the Exit is queued.
func (l *Local) stopDetached(ctx context.Context, inst *instance) error {
	sh := inst.shim
	if err := shimCall(ctx, inst.info.WorkDir, "stop"); err != nil {
		l.log.Warn("ask the shim to stop the instance", "instance", inst.info.ID, "error", err)
	}
	t := time.NewTimer(sh.rec.Shim.StopTimeout + shimGrace)
	defer t.Stop()
	select {
	case <-inst.done:
		return nil
	case <-l.closing:
		return ErrClosed
	case <-ctx.Done():
	case <-t.C:
	}
	kctx, cancel := context.WithTimeout(context.Background(), shimGrace)
	defer cancel()
	if err := shimCall(kctx, inst.info.WorkDir, "kill"); err != nil {
		// The shim does not answer: end it. Its app's leader dies with it (Pdeathsig)
		// and watchShim kills the rest of the group.
		l.log.Warn("killing an instance's shim that does not answer", "instance", inst.info.ID, "error", err)
		if err := sh.watch.signal(syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, os.ErrClosed) {
			l.log.Warn("kill shim", "instance", inst.info.ID, "error", err)
		}
	}
	select {
	case <-inst.done:
		return nil
	case <-l.closing:
		return ErrClosed
	}
}

// followDetached streams the instance's output through its shim; errShimGone when the
// shim does not serve it (it ended meanwhile: the caller then reads the files).
func (l *Local) followDetached(ctx context.Context, inst *instance, n int, w io.Writer) error {
	c, err := dialCtl(ctx, inst.info.WorkDir)
	if err != nil {
		return fmt.Errorf("%w: %v", errShimGone, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	br := bufio.NewReader(c)
	if _, err := fmt.Fprintf(c, "follow %d\n", n); err != nil {
		return fmt.Errorf("%w: %v", errShimGone, err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "ok\n" {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: answer %q, %v", errShimGone, line, err)
	}
	_, err = io.Copy(w, br)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("tail %s: %w", inst.info.ID, err)
	}
	return nil
}

// shimCall sends one command on the shim's control socket and waits for its "ok".
func shimCall(ctx context.Context, workDir, cmd string) error {
	c, err := dialCtl(ctx, workDir)
	if err != nil {
		return fmt.Errorf("%w: %v", errShimGone, err)
	}
	defer c.Close()
	dl := time.Now().Add(shimGrace)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.SetDeadline(dl)
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return fmt.Errorf("%w: %v", errShimGone, err)
	}
	line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
	if err != nil {
		return fmt.Errorf("%w: %v", errShimGone, err)
	}
	if line != "ok\n" {
		return fmt.Errorf("shim answered %s to %s", strings.TrimSpace(line), cmd)
	}
	return nil
}
