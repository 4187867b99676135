package benchkit

import (
	"context"
	"os/exec"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// readyTimeout bounds how long StartUp waits for the ready line.
const readyTimeout = 2 * time.Minute

// stopTimeout bounds how long Stop waits for shoal up to drain and exit
// before it kills it.
const stopTimeout = 2 * time.Minute

// Up is a running `shoal up`. Its fields are set by StartUp and read-only
// afterwards; Stop must be called once.
type Up struct {
	Dir      string         // the app folder it runs in
	Cmd      *exec.Cmd      // the shoal up process
	LBURL    string         // the balancer, e.g. http://127.0.0.1:40123
	AdminURL string         // the admin API
	Client   *client.Client // admin API client with the folder's token

	up *testenv.Up
}

// StartUp runs `bin up` in dir with testenv.StartUp, the helper the
// end-to-end tests use, and blocks until its ready line (at most 2
// minutes, or until ctx ends). Its output is captured in memory for as
// long as it runs.
func StartUp(ctx context.Context, bin, dir string) (*Up, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	u, err := testenv.StartUp(ctx, bin, dir)
	if err != nil {
		return nil, err
	}
	return &Up{Dir: dir, Cmd: u.Cmd, LBURL: u.LBURL, AdminURL: u.AdminURL,
		Client: client.New(u.AdminURL, u.Token), up: u}, nil
}

// Stop sends SIGINT (drain and stop) to shoal up and blocks until it has
// exited and its output is read; after 2 minutes it kills its process
// group. It does not remove Dir.
func (u *Up) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	u.up.Stop(ctx, syscall.SIGINT)
	u.up.Close()
}
