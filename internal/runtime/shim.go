package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// The shim of detached mode. A detached Local starts, for each instance, this executable
// again with shimEnv set, in a session of its own (setsid), so that neither the Local's
// death nor a signal to its process group reaches it. Its main calls ShimMain, which
// runs the shim:
//
//	fd 3 (config pipe)  <- shimConfig as JSON: spec, secrets and environment, never on disk or in argv
//	fork the app        -> the shim is its parent (real exit status by wait), Pdeathsig=SIGKILL
//	pid record          -> <data>/runtime/pids/<id>, with the shim's pid and start time (Adopt)
//	fd 4 (status pipe)  -> shimStatus: the app's pid, or why it did not start
//	ctl.sock (0600)     <- "stop", "kill", "follow <n>" from any Local on the data directory
//	app ends            -> output drained into the log, exit.json written atomically, exit 0
//
// The shim writes its own diagnostics to shim.log in the instance folder. It never
// removes the pid record: the Local that reports the Exit does, so an end that no Local
// saw is reported by the next Adopt.

// shimEnv is the environment variable that makes the executable a shim.
const shimEnv = "SHOAL_RUNTIME_SHIM"

// File names in the instance folder.
const (
	ctlSockName = "ctl.sock"
	shimLogName = "shim.log"
)

// maxShimConfig bounds the configuration a shim reads.
const maxShimConfig = 16 << 20

// shimConfig is what a Local hands its shim through the config pipe.
type shimConfig struct {
	Spec     Spec     `json:"spec"` // Secrets included
	Env      []string `json:"env"`  // the app's whole environment
	WorkDir  string   `json:"work_dir"`
	LogMax   int64    `json:"log_max"`
	LogFiles int      `json:"log_files"`
	// Record is the pid record to write once the app runs; the shim fills in the
	// pids and start times.
	Record     pidRecord `json:"record"`
	RecordPath string    `json:"record_path"`
}

// shimStatus is the shim's one answer on the status pipe.
type shimStatus struct {
	PID        int    `json:"pid,omitempty"`
	StartTicks uint64 `json:"start_ticks,omitempty"`
	Error      string `json:"error,omitempty"`
}

// ShimMain runs the shim of detached mode when this process was started as one, and
// then returns the shim's exit code and true; otherwise it returns at once with false.
// A binary that creates a detached Local must call it first thing in main (and a test
// binary in TestMain), before flags or any other work:
//
//	if code, ok := runtime.ShimMain(); ok {
//		os.Exit(code)
//	}
func ShimMain() (code int, isShim bool) {
	if os.Getenv(shimEnv) == "" {
		return 0, false
	}
	return runShim(), true
}

func runShim() int {
	// The app's Pdeathsig follows the thread that forked it; main's goroutine forks,
	// stays locked to its thread and returns only when the shim exits.
	goruntime.LockOSThread()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance_shim", os.Getpid())
	for _, fd := range []int{3, 4} {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			logger.Error("shim started without its config and status pipes (fd 3 and 4); only a detached runtime starts shims")
			return 2
		}
	}
	cfgFile, status := os.NewFile(3, "shim-config"), os.NewFile(4, "shim-status")
	report := func(st shimStatus) {
		if err := json.NewEncoder(status).Encode(st); err != nil {
			// The Local is gone; the pid record (if written) lets Adopt find us.
			logger.Warn("report to the runtime", "error", err)
		}
		status.Close()
	}
	var cfg shimConfig
	err := json.NewDecoder(io.LimitReader(cfgFile, maxShimConfig)).Decode(&cfg)
	cfgFile.Close()
	if err != nil {
		report(shimStatus{Error: fmt.Sprintf("read shim config: %v", err)})
		return 2
	}
	logger = logger.With("instance", cfg.Spec.ID)
	s, err := startShim(cfg, logger)
	if err != nil {
		report(shimStatus{Error: err.Error()})
		return 1
	}
	report(shimStatus{PID: s.g.pid, StartTicks: s.rec.StartTicks})
	s.run()
	return 0
}

// shim is the running shim of one instance.
type shim struct {
	cfg    shimConfig
	log    *slog.Logger
	g      *group
	rec    pidRecord
	ln     *net.UnixListener
	conns  sync.WaitGroup
	stopMu sync.Once
}

// startShim listens on the control socket, forks the app and writes the pid record.
func startShim(cfg shimConfig, logger *slog.Logger) (*shim, error) {
	ln, err := listenCtl(cfg.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	fork := func(_ context.Context, cmd *exec.Cmd) error { return cmd.Start() }
	g, err := startGroup(context.Background(), fork, cfg.Spec, cfg.Env, cfg.WorkDir, cfg.LogMax, cfg.LogFiles, logger, nil)
	if err != nil {
		ln.Close()
		return nil, err
	}
	rec := cfg.Record
	rec.PID, rec.PGID = g.pid, g.pid
	app, err := readStat(g.pid) // the unreaped child is readable even if it has exited
	if err == nil {
		rec.StartTicks = app.StartTime
		var self procStat
		self, err = readStat(os.Getpid())
		rec.Shim.PID, rec.Shim.StartTicks = os.Getpid(), self.StartTime
	}
	if err == nil {
		var b []byte
		if b, err = json.Marshal(rec); err == nil {
			err = atomicfile.Write(cfg.RecordPath, b, 0o600)
		}
	}
	if err != nil {
		g.abort()
		ln.Close()
		return nil, fmt.Errorf("record pid: %w", err)
	}
	return &shim{cfg: cfg, log: logger, g: g, rec: rec, ln: ln}, nil
}

// run serves the control socket until the app has ended, then records the end.
func (s *shim) run() {
	go s.g.copyOutput()
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.serve()
	}()
	x := s.g.wait()
	if err := writeExitRecord(s.cfg.WorkDir, x, s.rec.StartTicks); err != nil {
		s.log.Error("record the instance's end", "error", err)
	}
	s.ln.Close()
	<-served
	// Followers end when the log closes; a client that never sent its command is cut
	// off by its read deadline.
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		s.log.Warn("control connections still open at exit")
	}
	os.Remove(filepath.Join(s.cfg.WorkDir, ctlSockName))
}

func (s *shim) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("accept on control socket", "error", err)
			}
			return
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			defer c.Close()
			s.handle(c)
		}()
	}
}

// handle answers one command: "stop" starts a stop (the stop signal, then SIGKILL of the
// group after the stop timeout) and answers "ok"; "kill" escalates at once; "follow <n>"
// answers "ok" and then streams the last n lines and all new output until the log is
// closed (the app ended and its output is drained) or the client goes away.
func (s *shim) handle(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(io.LimitReader(c, 256))
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch cmd {
	case "stop":
		s.stopMu.Do(func() { go s.g.stop(context.Background()) })
		io.WriteString(c, "ok\n")
	case "kill":
		s.g.kill()
		io.WriteString(c, "ok\n")
	case "follow":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 {
			fmt.Fprintf(c, "error bad line count %q\n", arg)
			return
		}
		c.SetReadDeadline(time.Time{})
		if _, err := io.WriteString(c, "ok\n"); err != nil {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		gone := make(chan struct{})
		go func() { // the client sends nothing more: EOF means it went away
			defer close(gone)
			io.Copy(io.Discard, br)
			cancel()
		}()
		err = tail(ctx, s.g.log.path, s.cfg.LogFiles, s.g.log, n, true, c)
		cancel()
		c.Close()
		<-gone
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Debug("follow ended", "error", err)
		}
	default:
		fmt.Fprintf(c, "error unknown command %q\n", cmd)
	}
}

// listenCtl listens on the control socket of the instance folder, at 0600. A socket's
// path is limited to 107 bytes, which a data directory and an instance id can pass
// together, so the path is reached through a descriptor of the folder
// (/proc/self/fd/<n>/ctl.sock).
func listenCtl(workDir string) (*net.UnixListener, error) {
	path := filepath.Join(workDir, ctlSockName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var ln *net.UnixListener
	err := viaDirFD(workDir, func(addr string) error {
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // the fd path is gone by then; run removes the file
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// dialCtl connects to the control socket of the instance folder.
func dialCtl(ctx context.Context, workDir string) (net.Conn, error) {
	var c net.Conn
	err := viaDirFD(workDir, func(addr string) error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "unix", addr)
		return err
	})
	return c, err
}

// viaDirFD calls fn with the address of the control socket in dir through a descriptor
// of dir that stays open while fn runs.
func viaDirFD(dir string, fn func(addr string) error) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return fn("/proc/self/fd/" + strconv.Itoa(fd) + "/" + ctlSockName)
}
