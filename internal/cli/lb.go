package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/lb"
)

// runLB is "shoal lb": with a subcommand it talks to a running balancer
// (see lbctl.go); otherwise it runs one from lb.yaml.
func runLB(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		if sub, ok := lbSubcommands()[args[0]]; ok {
			return sub.run(ctx, env, args[1:])
		}
	}
	fs := flag.NewFlagSet("lb", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("c", "lb.yaml", "balancer configuration `file`")
	logFormat := fs.String("log-format", "text", "log format on stderr: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(env.Stderr, "usage: shoal lb [-c lb.yaml] [-log-format text|json] [-log-level info]")
		fmt.Fprintln(env.Stderr, "       shoal lb <status|add|remove|drain|undrain|weight|reload|maintenance> ... (shoal lb <cmd> -h)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return usagef("unknown lb command %q", fs.Arg(0))
	}
	logger, err := newLogger(env.Stderr, *logFormat, *logLevel)
	if err != nil {
		return &UsageError{Err: err}
	}
	d := &lbDaemon{path: *cfgPath, log: logger}
	return d.run(ctx)
}

// newLogger returns a slog logger writing to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// lbDaemon runs one balancer and its admin API from a configuration file.
type lbDaemon struct {
	path string
	log  *slog.Logger
	b    *lb.Balancer

	// mu serialises reloads (SIGHUP and the admin API) and guards the
	// access log writers.
	mu         sync.Mutex
	accessPath string
	accessW    io.Writer   // nil when off
	accessSet  bool        // accessW and accessPath are set
	logs       []io.Closer // every access log opened; closed at exit
}

func (d *lbDaemon) run(ctx context.Context) error {
	file, err := config.LoadLB(d.path)
	if err != nil {
		return &UsageError{Err: err}
	}
	d.warn(file)
	token, err := adminapi.LoadOrCreateToken(file.Admin.TokenFile)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	defer d.closeLogs()
	cfg, err := d.prepare(file)
	if err != nil {
		return err
	}
	b, err := lb.New(cfg)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("%s: %w", d.path, err)}
	}
	d.b = b
	// Bind the admin listener first: a failure then leaves nothing of the
	// balancer's to release.
	adminLn, err := listenAdmin(file.Admin)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	if err := b.Listen(); err != nil {
		adminLn.Close()
		return fmt.Errorf("listen: %w", err)
	}
	// Catch SIGHUP before announcing the listeners: whoever reads those
	// lines may send one at once, and its default action is to exit.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for _, l := range cfg.Listeners {
		d.log.Info("listening", "name", l.Name, "addr", b.Addr(l.Name).String(), "tls", len(l.TLS) > 0)
	}
	if file.Admin.Addr != "" {
		d.log.Info("listening", "name", "admin", "addr", adminLn.Addr().String(), "token_file", file.Admin.TokenFile)
	} else {
		d.log.Info("listening", "name", "admin", "socket", file.Admin.Socket, "token_file", file.Admin.TokenFile)
	}

	mux := http.NewServeMux()
	adminapi.LBRoutes(mux, b, d.reload)
	admin := &http.Server{
		Handler:           adminapi.RequireToken(token, mux),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := b.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("balancer: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
		defer cancel()
		// Waits on wait=true drains end with their clients' contexts;
		// Close stops those that outlive the grace period.
		if err := admin.Shutdown(sctx); err != nil {
			admin.Close()
		}
		return nil
	})
	g.Go(func() error {
		d.watchHangup(gctx, hup)
		return nil
	})
	err = g.Wait()
	if err == nil {
		d.log.Info("stopped")
	}
	return err
}

// watchHangup reloads the configuration on every signal from hup until
// ctx ends.
func (d *lbDaemon) watchHangup(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := d.reload(ctx); err != nil {
				d.log.Error("reload rejected; the running configuration is kept", "file", d.path, "error", err)
			}
		}
	}
}

// reload re-reads the configuration file and swaps it in. On any error
// the running configuration stays.
func (d *lbDaemon) reload(ctx context.Context) error {
	file, err := config.LoadLB(d.path)
	if err != nil {
		return err
	}
	d.warn(file)
	cfg, err := d.prepare(file)
	if err != nil {
		return err
	}
	if err := d.b.Reload(cfg); err != nil {
		return err
	}
	d.log.Info("reloaded", "file", d.path, "listeners", len(cfg.Listeners), "routes", len(cfg.Routes), "pools", len(cfg.Pools))
	return nil
}

// warn logs each deprecated key of the file, with its file:line:col and
// the key to write instead.
func (d *lbDaemon) warn(file *config.LBFile) {
	for _, w := range file.Warnings {
		d.log.Warn("deprecated configuration key", "warning", w.String())
	}
}

// prepare fills the caller-owned fields of the file's balancer config:
// the logger and the access log.
func (d *lbDaemon) prepare(file *config.LBFile) (lb.Config, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg := file.Balancer
	cfg.Logger = d.log
	if !d.accessSet || file.AccessLog != d.accessPath {
		w, c, err := file.OpenAccessLog()
		if err != nil {
			return lb.Config{}, err
		}
		if d.accessSet {
			d.log.Info("access log moved", "from", d.accessPath, "to", file.AccessLog)
		}
		// The previous writer stays open until exit: requests in flight
		// under the previous configuration may still log to it.
		d.logs = append(d.logs, c)
		d.accessW, d.accessPath, d.accessSet = w, file.AccessLog, true
	} else if lf, ok := d.accessW.(*lb.LogFile); ok {
		// Same file: open it again at its path, so that a reload after
		// logrotate (create mode) moved it writes to a new file there.
		if err := lf.Reopen(); err != nil {
			return lb.Config{}, err
		}
		d.log.Info("access log reopened", "file", lf.Path())
	}
	cfg.AccessLog = d.accessW
	return cfg, nil
}

func (d *lbDaemon) closeLogs() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.logs {
		c.Close()
	}
}

// listenAdmin binds the admin API: TCP at a.Addr when set, else the
// Unix socket at a.Socket, created with mode 0600 in a directory created
// with mode 0700 (like HAProxy's stats socket). A socket file left by a
// balancer that did not exit cleanly is replaced; one that answers belongs
// to a running balancer and is an error.
func listenAdmin(a config.AdminConfig) (net.Listener, error) {
	if a.Addr != "" {
		return net.Listen("tcp", a.Addr)
	}
	if err := os.MkdirAll(filepath.Dir(a.Socket), 0o700); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if fi, err := os.Lstat(a.Socket); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin socket %s: the file exists and is not a socket", a.Socket)
		}
		if c, err := net.DialTimeout("unix", a.Socket, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s is in use: another balancer runs from this directory", a.Socket)
		}
		if err := os.Remove(a.Socket); err != nil {
			return nil, fmt.Errorf("remove stale admin socket: %w", err)
		}
	}
	// The umask makes the socket 0600 from its creation; nothing else
	// creates files while the daemon starts.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", a.Socket)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(a.Socket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket mode: %w", err)
	}
	return ln, nil
}

// adminURL turns an admin listen address into a base URL. A Unix socket
// ("unix:/path") is kept as is: package client dials it.
func adminURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return "http://" + addr
}
