package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The test binary doubles as the child process: with TESTENV_CHILD set it
// behaves as a small program instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("TESTENV_CHILD") {
	case "":
		goleak.VerifyTestMain(m)
	case "echo":
		// Prints a line on each stream, then echoes stdin lines until EOF
		// or SIGTERM (exit 0 after printing "bye").
		fmt.Println("ready out")
		fmt.Fprintln(os.Stderr, "listening addr=127.0.0.1:1234")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(os.Stdin)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		for {
			select {
			case <-sig:
				fmt.Println("bye")
				os.Exit(0)
			case l, ok := <-lines:
				if !ok {
					os.Exit(3)
				}
				fmt.Println("echo", l)
			}
		}
	case "exit7":
		fmt.Println("partial")
		os.Exit(7)
	case "up":
		// Stands in for `shoal up`: a log line, the ready line, then exit
		// 0 on SIGINT.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT)
		fmt.Fprintln(os.Stderr, "level=INFO msg=starting")
		fmt.Println("shoal up: app demo release v3 serving on http://127.0.0.1:1111 (admin http://127.0.0.1:2222)")
		<-sig
		os.Exit(0)
	case "upfail":
		fmt.Fprintln(os.Stderr, "shoal.yaml:3:1: unknown field")
		os.Exit(2)
	default:
		labChild(os.Getenv("TESTENV_CHILD"))
	}
}

func child(t *testing.T, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TESTENV_CHILD="+mode)
	return cmd
}

func TestProcessLinesSignalAndExit(t *testing.T) {
	ctx := Context(t, 30*time.Second)
	cmd := child(t, "echo")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := StartCmd(t, cmd)
	m, err := p.WaitForLine(ctx, regexp.MustCompile(`listening addr=(\S+)`))
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "127.0.0.1:1234" {
		t.Fatalf("submatch = %q", m[1])
	}
	mark := p.Mark()
	fmt.Fprintln(stdin, "hello")
	if _, i, err := p.WaitForLineFrom(ctx, mark, regexp.MustCompile(`^echo hello$`)); err != nil || i < mark {
		t.Fatalf("echo line: index %d, err %v", i, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(ctx)
	if err != nil || code != 0 {
		t.Fatalf("exit code %d, err %v", code, err)
	}
	if _, err := p.WaitForLine(ctx, regexp.MustCompile(`^bye$`)); err != nil {
		t.Fatalf("final line lost: %v\n%s", err, p.Output())
	}
	if !p.Exited() {
		t.Fatal("Exited() = false after Wait")
	}
}

func TestWaitForLineFailsWhenProcessExits(t *testing.T) {
	ctx := Context(t, 30*time.Second)
	p := StartCmd(t, child(t, "exit7"))
	if _, err := p.WaitForLine(ctx, regexp.MustCompile(`never printed`)); err == nil {
		t.Fatal("WaitForLine succeeded on an exited process")
	}
	if code, err := p.Wait(ctx); err != nil || code != 7 {
		t.Fatalf("exit code %d, err %v", code, err)
	}
}

func TestCleanupKillsRunningProcess(t *testing.T) {
	var p *Process
	t.Run("inner", func(t *testing.T) {
		p = StartCmd(t, child(t, "echo"))
		if _, err := p.WaitForLine(Context(t, 30*time.Second), regexp.MustCompile(`ready`)); err != nil {
			t.Fatal(err)
		}
	})
	if !p.Exited() {
		t.Fatal("process still running after its test's cleanup")
	}
}

func TestWaitForReturnsLastError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	errLast := errors.New("still not ready")
	err := WaitFor(ctx, func() error { return errLast })
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !regexp.MustCompile(`still not ready`).MatchString(err.Error()) {
		t.Fatalf("err = %v", err)
	}
	n := 0
	if err := WaitFor(context.Background(), func() error {
		if n++; n < 3 {
			return errLast
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("err %v after %d calls", err, n)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records instead of ending
// the test, so Eventually's failure can be checked.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 10*time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("fn called %d times, want 3", n)
	}
	r := &fatalRecorder{TB: t}
	Eventually(r, 30*time.Millisecond, func() error { return errors.New("still not ready") })
	if !regexp.MustCompile(`^not within 30ms: .*still not ready`).MatchString(r.msg) {
		t.Fatalf("failure message %q", r.msg)
	}
}

func TestStartUp(t *testing.T) {
	ctx := Context(t, 30*time.Second)
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/.shoal", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/.shoal/admin.token", []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TESTENV_CHILD", "up")
	u, err := StartUp(ctx, os.Args[0], dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	if u.App != "demo" || u.Release != "3" || u.LBURL != "http://127.0.0.1:1111" || u.AdminURL != "http://127.0.0.1:2222" || u.Token != "tok" || u.Dir != dir {
		t.Fatalf("up = %+v", u)
	}
	if code, err := u.Stop(ctx, syscall.SIGINT); err != nil || code != 0 {
		t.Fatalf("stop: exit %d, %v", code, err)
	}

	t.Setenv("TESTENV_CHILD", "upfail")
	_, err = StartUp(ctx, os.Args[0], dir)
	if err == nil || !regexp.MustCompile(`(?s)not ready: process exited.*shoal.yaml:3:1: unknown field`).MatchString(err.Error()) {
		t.Fatalf("StartUp of a failing shoal up: %v", err)
	}
}
