package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Local.
type Options struct {
	// DataDir holds instances/<id>/ (logs, tmp) and runtime/pids/. Required.
	DataDir string
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
	// LogMaxBytes is the size at which out.log rotates. Zero means 10 MiB.
	LogMaxBytes int64
	// LogFiles is how many log files to keep, out.log included. Zero means 3.
	LogFiles int
	// KeepStopped is how many folders of ended instances (their logs) to
	// keep under instances/, newest first; older ones are removed after
	// each exit and by CleanLeftovers. Zero means DefaultKeepStopped; a
	// negative value keeps every folder.
	KeepStopped int
	// Detached runs every instance under a shim of its own: this executable started
	// again, in a session of its own, which forks the app, holds its output, redacts
	// and rotates its log, stops it when asked and records its end (shim.go). The
	// instances then outlive this Local: Close leaves them running, and a later Local
	// on the same DataDir finds them again with Adopt. The executable's main must call
	// ShimMain first. False (the default) ties every instance to this process: it dies
	// with it, and Close stops it.
	Detached bool
}

// Local runs instances as processes on this host. Create it with NewLocal and end it with
// Close; all methods are safe for concurrent use.
type Local struct {
	dataDir  string
	log      *slog.Logger
	logMax   int64
	logFiles int
	keep     int // see Options.KeepStopped
	detached bool
	closing  chan struct{} // closed when Close begins
	// cg makes a cgroup per instance (default mode, where the host allows it); nil
	// otherwise. cgOff is set when a fork into a cgroup failed: none is tried again.
	cg    *cgroups
	cgOff atomic.Bool

	pruneMu sync.Mutex // one pruning of instances/ at a time (prune.go)

	spawn       chan spawnReq
	spawnerDone chan struct{}
	exits       *exitQueue

	mu       sync.Mutex
	insts    map[string]*instance // nil value: a Start in progress holds the id
	removing map[string]bool      // ended instances whose folder is being removed
	closed   bool
	starting sync.WaitGroup // Starts in progress
	procs    sync.WaitGroup // per-instance waiter and copier goroutines

	closeOnce sync.Once
	closeErr  error
}

// instance is one running instance: a process group of this process (default mode) or
// one watched through its shim (detached mode).
type instance struct {
	info   Info
	cgroup string        // the instance's cgroup directory; "" when it has none
	g      *group        // default mode
	shim   *shimHandle   // detached mode
	done   chan struct{} // closed after the Exit is queued
}

// NewLocal prepares the data directory and starts the runtime's goroutines. It does not
// touch leftovers of a previous run; call CleanLeftovers for that (Adopt in detached
// mode).
func NewLocal(opts Options) (*Local, error) {
	if opts.DataDir == "" {
		return nil, errors.New("new runtime: DataDir is required")
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("new runtime: %w", err)
	}
	l := &Local{
		dataDir:     dir,
		log:         opts.Logger,
		logMax:      opts.LogMaxBytes,
		logFiles:    opts.LogFiles,
		spawn:       make(chan spawnReq),
		spawnerDone: make(chan struct{}),
		exits:       newExitQueue(),
		insts:       map[string]*instance{},
		removing:    map[string]bool{},
		keep:        opts.KeepStopped,
		detached:    opts.Detached,
		closing:     make(chan struct{}),
	}
	if l.keep == 0 {
		l.keep = DefaultKeepStopped
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.logMax <= 0 {
		l.logMax = 10 << 20
	}
	if l.logFiles <= 0 {
		l.logFiles = 3
	}
	for _, d := range []string{l.pidDir(), filepath.Join(dir, "instances")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("new runtime: %w", err)
		}
	}
	if !l.detached {
		l.cg = openCgroups(dir)
	}
	go l.spawner()
	go l.exits.run()
	return l, nil
}

// Exits returns the channel on which every instance's Exit is delivered, exactly once,
// in the order the exits were observed. Reporting never blocks on the reader (exits are
// buffered), but there is one channel: use one reader. It is closed by Close.
func (l *Local) Exits() <-chan Exit { return l.exits.out }

func (l *Local) workDir(id string) string { return filepath.Join(l.dataDir, "instances", id) }

// Start starts an instance and returns once its process runs (not once it serves: health
// is the caller's business). The port in Info was free when chosen; see freePort for the
// race. ctx bounds only the start itself, not the instance's life. In detached mode it
// returns once the shim runs the process and has recorded it; an id that still has a
// pid record of a previous run (not yet adopted or cleaned) is refused with ErrExists.
func (l *Local) Start(ctx context.Context, spec Spec) (Info, error) {
	if !validID(spec.ID) {
		return Info{}, fmt.Errorf("start instance: invalid id %q", spec.ID)
	}
	if spec.Command == "" {
		return Info{}, fmt.Errorf("start instance %s: empty command", spec.ID)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return Info{}, fmt.Errorf("start instance %s: %w", spec.ID, ErrClosed)
	}
	if _, ok := l.insts[spec.ID]; ok || l.removing[spec.ID] {
		l.mu.Unlock()
		return Info{}, fmt.Errorf("start instance %s: %w", spec.ID, ErrExists)
	}
	l.insts[spec.ID] = nil
	l.starting.Add(1)
	l.mu.Unlock()
	defer l.starting.Done()

	start := l.start
	if l.detached {
		start = l.startDetached
	}
	inst, err := start(ctx, spec)
	l.mu.Lock()
	if err != nil {
		delete(l.insts, spec.ID)
	} else {
		l.insts[spec.ID] = inst
		if inst.g != nil {
			l.procs.Add(2)
		} else {
			l.procs.Add(1)
		}
	}
	l.mu.Unlock()
	if err != nil {
		return Info{}, fmt.Errorf("start instance %s: %w", spec.ID, err)
	}
	// Only now that the instance is recorded: wait removes it when it
	// ends, which can be at once, and a removal that came first would be
	// undone here, leaving an ended instance listed for ever.
	if inst.g != nil {
		go func() {
			defer l.procs.Done()
			inst.g.copyOutput()
		}()
		go l.wait(inst)
	} else {
		go l.watchShim(inst)
	}
	l.log.Info("instance started", "instance", spec.ID, "pid", inst.info.PID, "addr", inst.info.Addr,
		"detached", l.detached)
	return inst.info, nil
}

// prepareWork creates the instance's folder and tmp/ at 0700 and returns the folder.
func (l *Local) prepareWork(id string) (string, error) {
	work := l.workDir(id)
	// The folder holds the app's logs: only Shoal's user may read it.
	if err := os.MkdirAll(filepath.Join(work, "tmp"), 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(work, 0o700); err != nil {
		return "", err
	}
	return work, nil
}

// instanceEnv is the environment of an instance: PATH and HOME from this process, then
// spec.Env, then the four variables the runtime sets.
func instanceEnv(spec Spec, port int, work string) []string {
	env := make([]string, 0, len(spec.Env)+6)
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, spec.Env...)
	return append(env, "PORT="+strconv.Itoa(port), "SHOAL_INSTANCE_ID="+spec.ID,
		"SHOAL_INSTANCE_DIR="+work, "TMPDIR="+filepath.Join(work, "tmp"))
}

// start prepares the folder and log, forks the process and records its
// pid. The caller records the instance and then starts its copyOutput and
// wait goroutines.
func (l *Local) start(ctx context.Context, spec Spec) (*instance, error) {
	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("release dir %q is not a directory", spec.Dir)
	}
	work, err := l.prepareWork(spec.ID)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pick port: %w", err)
	}
	env := instanceEnv(spec, port, work)
	var cgPath string
	var g *group
	if l.cg != nil && !l.cgOff.Load() {
		path, f, cerr := l.cg.create(spec.ID)
		if cerr == nil {
			g, err = startGroup(ctx, l.fork, spec, env, work, l.logMax, l.logFiles, l.log, f)
			f.Close()
			if err == nil {
				cgPath, g.cgroup = path, path
			} else {
				os.Remove(path)
				if ctx.Err() == nil && l.cgOff.CompareAndSwap(false, true) {
					l.log.Warn("starting instances without a cgroup each: the fork into one failed", "instance", spec.ID, "error", err)
				}
			}
		} else if l.cgOff.CompareAndSwap(false, true) {
			l.log.Warn("starting instances without a cgroup each", "instance", spec.ID, "error", cerr)
		}
	}
	if g == nil {
		if g, err = startGroup(ctx, l.fork, spec, env, work, l.logMax, l.logFiles, l.log, nil); err != nil {
			return nil, err
		}
	}
	pid := g.pid
	st, err := readStat(pid) // a zombie is still readable: the child is not reaped yet
	if err == nil {
		err = l.writePidRecord(pidRecord{Version: pidRecordVersion, ID: spec.ID, PID: pid, PGID: pid, StartTicks: st.StartTime, BootID: bootID()})
	}
	if err != nil {
		g.abort()
		os.Remove(l.pidPath(spec.ID))
		if cgPath != "" {
			removeCgroup(cgPath, 5*time.Second)
		}
		return nil, fmt.Errorf("record pid: %w", err)
	}
	inst := &instance{
		cgroup: cgPath,
		info: Info{
			ID: spec.ID, PID: pid, PGID: pid, Port: port,
			Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: spec.Dir, WorkDir: work,
			LogPath: g.log.path, Command: spec.Command, StartedAt: time.Now(),
			Labels: maps.Clone(spec.Labels),
		},
		g: g, done: make(chan struct{}),
	}
	return inst, nil
}

// wait reports the end of an instance of this process (default mode), once its group
// has ended and its output is in the log.
func (l *Local) wait(inst *instance) {
	defer l.procs.Done()
	x := inst.g.wait()
	if inst.cgroup != "" {
		// The group is gone; whatever left it goes with the cgroup.
		if err := removeCgroup(inst.cgroup, 5*time.Second); err != nil {
			l.log.Warn("remove instance cgroup", "instance", inst.info.ID, "error", err)
		}
	}
	if err := os.Remove(l.pidPath(inst.info.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.log.Warn("remove pid record", "instance", inst.info.ID, "error", err)
	}
	l.report(inst, x)
}

// report queues the Exit of an instance of this Local, which it no longer lists, and
// prunes old folders.
func (l *Local) report(inst *instance, x Exit) {
	x.Labels = inst.info.Labels
	x.LogTail = readLogTail(inst.info.LogPath, 20)
	level := slog.LevelInfo
	if !x.Stopped {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "instance exited", "instance", x.ID, "code", x.Code,
		"signal", x.Signal, "stopped", x.Stopped)

	l.mu.Lock()
	delete(l.insts, inst.info.ID)
	l.mu.Unlock()
	l.exits.push(x)
	close(inst.done)
	l.pruneStopped()
}

// Stop sends the instance's StopSignal to its process group, waits for the group to exit
// for up to StopTimeout (or until ctx ends), then SIGKILLs the group. It returns after the
// process is reaped and its Exit (with Stopped=true) is queued. Concurrent Stops of one
// instance are fine; the signal is sent once. In detached mode the shim signals, waits
// and escalates (so a stop completes even if this Local goes away meanwhile); a Stop
// still waiting when Close begins returns an error wrapping ErrClosed.
func (l *Local) Stop(ctx context.Context, id string) error {
	inst := l.get(id)
	if inst == nil {
		return fmt.Errorf("stop instance %s: %w", id, ErrNotFound)
	}
	if inst.shim != nil {
		if err := l.stopDetached(ctx, inst); err != nil {
			return fmt.Errorf("stop instance %s: %w", id, err)
		}
		return nil
	}
	inst.g.stop(ctx)
	<-inst.done
	return nil
}

func (l *Local) get(id string) *instance {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.insts[id]
}

func (l *Local) running(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.insts[id]
	return ok
}

// List returns the running instances, sorted by ID.
func (l *Local) List() []Info {
	l.mu.Lock()
	out := make([]Info, 0, len(l.insts))
	for _, inst := range l.insts {
		if inst != nil {
			out = append(out, inst.info)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Get returns the Info of a running instance, or an error wrapping ErrNotFound.
func (l *Local) Get(id string) (Info, error) {
	inst := l.get(id)
	if inst == nil {
		return Info{}, fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	return inst.info, nil
}

// Close stops every instance (each with its StopSignal and StopTimeout, cut short by
// ctx), waits for all of them to be reaped and for their Exits to be received, closes the
// Exits channel, and ends the runtime's goroutines. Exits not received by the time ctx
// ends are dropped. Start fails after Close; Close may be called more than once.
//
// In detached mode Close does not stop the instances: it stops watching them, lists
// none, and leaves them running under their shims, with their records, for a later
// Local's Adopt. An instance that ends after Close is reported by that Adopt.
func (l *Local) Close(ctx context.Context) error {
	l.closeOnce.Do(func() { l.closeErr = l.close(ctx) })
	return l.closeErr
}

func (l *Local) close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.starting.Wait()
	close(l.closing)
	l.mu.Lock()
	insts := slices.Collect(maps.Values(l.insts))
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, inst := range insts {
		if inst.shim != nil {
			inst.shim.watch.cancel()
			continue
		}
		wg.Go(func() {
			inst.g.stop(ctx)
			<-inst.done
		})
	}
	wg.Wait()
	l.procs.Wait()
	close(l.spawn)
	<-l.spawnerDone
	if l.cg != nil {
		os.Remove(l.cg.dir) // empty once every instance has ended
	}
	if n := l.exits.finish(ctx); n > 0 {
		l.log.Warn("exits not received before close", "dropped", n)
	}
	return nil
}

// Stats sums CPU time and resident memory over the live processes of the instance's
// process group, read from /proc, at a cost that grows with the instance's processes,
// not the host's: with a cgroup per instance, over the processes in its cgroup (those
// that left the group included); without, by walking the instance's process tree from
// its leader (instanceMembers), where a process of the group whose parent exited
// (reparented away) is not counted.
func (l *Local) Stats(id string) (Stats, error) {
	inst := l.get(id)
	if inst == nil {
		return Stats{}, fmt.Errorf("stats %s: %w", id, ErrNotFound)
	}
	var members []procStat
	var err error
	if inst.cgroup != "" {
		members, err = cgroupMembers(inst.cgroup)
	} else {
		members, err = instanceMembers(inst.info.PID, inst.info.PGID)
	}
	if err != nil {
		return Stats{}, fmt.Errorf("stats %s: %w", id, err)
	}
	var s Stats
	page := int64(os.Getpagesize())
	for _, m := range members {
		s.CPUSeconds += float64(m.UTime+m.STime) / userHZ
		s.RSSBytes += m.RSSPages * page
		s.Processes++
	}
	return s, nil
}

// Logs returns the path of the instance's current log file (out.log). It works for
// exited instances too, as long as their directory exists.
func (l *Local) Logs(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("logs %s: %w", id, ErrNotFound)
	}
	p := instanceLogPath(l.workDir(id))
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("logs %s: %w", id, ErrNotFound)
	}
	return p, nil
}

// Tail writes the last n lines of the instance's output to w. With follow, it then keeps
// writing new output until the instance has exited and its output is drained (nil), or ctx
// ends (ctx's error). Following an instance that is not running just writes the tail.
func (l *Local) Tail(ctx context.Context, id string, n int, follow bool, w io.Writer) error {
	p, err := l.Logs(id)
	if err != nil {
		return err
	}
	var lf *logFile
	if inst := l.get(id); inst != nil && follow {
		if inst.shim != nil {
			if err := l.followDetached(ctx, inst, n, w); !errors.Is(err, errShimGone) {
				return err
			}
		} else {
			lf = inst.g.log
		}
	}
	if err := tail(ctx, p, l.logFiles, lf, n, follow, w); err != nil {
		return fmt.Errorf("tail %s: %w", id, err)
	}
	return nil
}
