package daemon

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/lb"
)

// prepare fills the caller-owned fields of the file's balancer config:
// the logger and the access log.
func (d *LB) prepare(file *config.LBFile) (lb.Config, error) {
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

func (d *LB) closeLogs() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.logs {
		c.Close()
	}
	d.logs = nil
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
