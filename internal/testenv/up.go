package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// UpReady matches the line `shoal up` prints once its desired instances
// serve; the submatches are the app, the release number, the balancer's
// URL and the admin API's URL.
var UpReady = regexp.MustCompile(`shoal up: app (\S+) release v(\d+) serving on (http://\S+) \(admin (http://\S+)\)`)

// Up is a `shoal up` started by StartUp: the process and what its ready
// line and data folder said. The fields are read-only.
type Up struct {
	*Process
	Dir      string // the app folder it runs in
	App      string // the app's name
	Release  string // the release number it serves, such as "1"
	LBURL    string // the balancer, such as http://127.0.0.1:40123
	AdminURL string // the admin API
	Token    string // the admin token, from Dir/.shoal/admin.token
}

// StartUp runs `bin up` in dir with the environment of the caller, waits
// for its ready line (UpReady) and reads its admin token. It returns an
// error, with the output so far, when ctx ends or the process exits
// first; the process is then closed. Otherwise the caller owns the
// process: end it with Stop or Close (a test's helper registers Close as
// a cleanup).
func StartUp(ctx context.Context, bin, dir string) (*Up, error) {
	return StartUpEnv(ctx, bin, dir, nil)
}

// StartUpEnv is StartUp with the environment env (NAME=value strings, as
// exec.Cmd.Env; nil for the caller's), for a test that puts a stand-in
// command on the PATH or sets what run.env_from_host copies.
func StartUpEnv(ctx context.Context, bin, dir string, env []string) (*Up, error) {
	cmd := exec.Command(bin, "up")
	cmd.Dir = dir
	cmd.Env = env
	p, err := StartProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("shoal up: %w", err)
	}
	m, err := p.WaitForLine(ctx, UpReady)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("shoal up not ready: %w\n%s", err, p.Output())
	}
	tok, err := os.ReadFile(filepath.Join(dir, ".shoal", "admin.token"))
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("shoal up: admin token: %w", err)
	}
	return &Up{Process: p, Dir: dir, App: m[1], Release: m[2], LBURL: m[3], AdminURL: m[4],
		Token: strings.TrimSpace(string(tok))}, nil
}

// Stop sends sig to `shoal up` (SIGTERM and SIGINT both drain and stop)
// and waits until it has exited and its output is read, or ctx ends. It
// returns the exit code; see Process.Wait.
func (u *Up) Stop(ctx context.Context, sig os.Signal) (int, error) {
	if err := u.Signal(sig); err != nil && !u.Exited() {
		return -1, fmt.Errorf("stop shoal up: %w", err)
	}
	return u.Wait(ctx)
}
