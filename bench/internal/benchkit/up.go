package benchkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
)

// readyLine is the line `shoal up` prints once its instances serve.
var readyLine = regexp.MustCompile(`serving on (http://\S+) \(admin (http://\S+)\)`)

// readyTimeout bounds how long StartUp waits for the ready line.
const readyTimeout = 2 * time.Minute

// Up is a running `shoal up`. Its fields are set by StartUp and read-only
// afterwards; Stop must be called once.
type Up struct {
	Dir      string         // the app folder it runs in
	Cmd      *exec.Cmd      // the shoal up process
	LBURL    string         // the balancer, e.g. http://127.0.0.1:40123
	AdminURL string         // the admin API
	Client   *client.Client // admin API client with the folder's token

	drained chan struct{} // closed when stdout has been read to the end
}

// StartUp runs `bin up` in dir and blocks until its ready line (at most
// 2 minutes, or until ctx ends), then reads the admin token from
// dir/.shoal/admin.token. Its stdout is read and discarded for as long
// as it runs; stderr is left unread (discarded by exec).
func StartUp(ctx context.Context, bin, dir string) (*Up, error) {
	cmd := exec.CommandContext(ctx, bin, "up")
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("shoal up: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("shoal up: %w", err)
	}
	u := &Up{Dir: dir, Cmd: cmd, drained: make(chan struct{})}
	ready := make(chan []string, 1)
	go func() {
		defer close(u.drained)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		sent := false // only the first ready line counts
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil && !sent {
				ready <- m
				sent = true
			}
		}
		io.Copy(io.Discard, out) // after an over-long line: keep the pipe drained
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	var m []string
	select {
	case m = <-ready:
	case <-u.drained:
		select {
		case m = <-ready:
		default:
			u.Stop()
			return nil, errors.New("shoal up exited before it was ready")
		}
	case <-timer.C:
		u.Stop()
		return nil, fmt.Errorf("shoal up not ready within %s", readyTimeout)
	case <-ctx.Done():
		u.Stop()
		return nil, ctx.Err()
	}
	u.LBURL, u.AdminURL = m[1], m[2]
	tok, err := os.ReadFile(filepath.Join(dir, ".shoal", "admin.token"))
	if err != nil {
		u.Stop()
		return nil, err
	}
	u.Client = client.New(u.AdminURL, strings.TrimSpace(string(tok)))
	return u, nil
}

// Stop sends SIGINT (drain and stop) to shoal up and blocks until it has
// exited and its output reader has ended. It does not remove Dir.
func (u *Up) Stop() {
	u.Cmd.Process.Signal(syscall.SIGINT)
	u.Cmd.Wait() // closes the stdout pipe, which ends the reader
	<-u.drained
}
