// Package testenv is test-only support for end-to-end tests that run the
// real shoal binary: build it once per test binary, start processes whose
// output is captured line by line, wait for a line or a condition with a
// deadline, and make sure every started process is killed and reaped when
// the test ends.
//
// Typical use:
//
//	bin := testenv.BuildShoal(t)
//	p := testenv.Start(t, bin, "lb", "-c", cfgPath)
//	m, err := p.WaitForLine(ctx, regexp.MustCompile(`listening name=web addr=(\S+)`))
//	...
//	p.Signal(syscall.SIGTERM)
//	if code := p.Wait(ctx); code != 0 { t.Fatalf(...) }
//
// Nothing here sleeps to synchronise: waits are on channels or polls
// bounded by a context deadline.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// BuildShoal builds ./cmd/shoal of the module that contains the current
// test once per test binary (the first caller builds, the others wait for
// that build) and returns the path of the binary. It fails the test when
// the build fails. The binary lives in a temporary directory that is
// removed by Cleanup, which TestMain should call after m.Run; without it
// the directory is left in the OS temp dir.
func BuildShoal(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		build.dir, err = os.MkdirTemp("", "shoal-testbin-")
		if err != nil {
			build.err = fmt.Errorf("temp dir: %w", err)
			return
		}
		bin := filepath.Join(build.dir, "shoal")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		args := []string{"build", "-o", bin}
		if RaceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/shoal")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/shoal: %v\n%s", err, out)
			return
		}
		build.bin = bin
	})
	if build.err != nil {
		t.Fatalf("build shoal: %v", build.err)
	}
	return build.bin
}

// Cleanup removes the binary built by BuildShoal. Call it from TestMain
// after m.Run.
func Cleanup() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// ModuleRoot returns the directory holding the go.mod of the current
// module, found by walking up from the working directory of the test.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for range 64 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("module root: no go.mod above the working directory")
}

// WaitFor calls fn until it returns nil or ctx ends, and returns nil or the
// last error of fn (joined with the context's error) at the deadline. It
// polls with a short backoff (5ms doubling to 200ms), never sleeping past
// ctx. Without a ctx deadline it waits until ctx is cancelled.
func WaitFor(ctx context.Context, fn func() error) error {
	delay := 5 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// Eventually is WaitFor for a test: it calls fn until it returns nil, for
// at most d (and never past the test's deadline, see Context), and fails
// the test with fn's last error if it never does. Call it only from the
// test's own goroutine (it calls t.Fatalf).
func Eventually(t testing.TB, d time.Duration, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(Context(t, d))
	defer cancel()
	if err := WaitFor(ctx, fn); err != nil {
		t.Fatalf("not within %v: %v", d, err)
	}
}

// Context returns a context for one test step that ends at the test's
// deadline minus a margin (so failures are reported, not killed by the
// test binary's timeout) or after max, whichever is first.
func Context(t testing.TB, max time.Duration) context.Context {
	deadline := time.Now().Add(max)
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := tt.Deadline(); ok && d.Add(-5*time.Second).Before(deadline) {
			deadline = d.Add(-5 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}
