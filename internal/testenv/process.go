package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a started child process whose stdout and stderr are captured
// line by line. It is safe for concurrent use. The process runs in its own
// process group; Close (which a test's Cleanup calls, see StartCmd) kills
// the whole group with SIGKILL if it is still running and reaps it.
type Process struct {
	Cmd *exec.Cmd

	outR, errR *os.File      // read ends of the output pipes
	done       chan struct{} // closed when the process has been reaped
	readers    sync.WaitGroup
	state      *os.ProcessState
	waitErr    error

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed and replaced on every new line
}

// Line is one captured line of output.
type Line struct {
	Stderr bool
	Text   string
}

// Start runs bin with args (working directory and environment inherited)
// and returns its handle; see StartCmd.
func Start(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	return StartCmd(t, exec.Command(bin, args...))
}

// StartCmd starts cmd, which must not have Stdout, Stderr or
// SysProcAttr.Setpgid set by the caller (they are set here). It fails
// the test if the process cannot start. When the test ends, its Cleanup
// calls Close and logs the process's output if the test failed.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p, err := StartProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(p.Cmd.Args, " "), p.Output())
		}
	})
	return p
}

// StartProcess is StartCmd outside a test (a benchmark program): the
// caller must call Close once it is done with the process.
func StartProcess(cmd *exec.Cmd) (*Process, error) {
	p := &Process{Cmd: cmd, done: make(chan struct{}), changed: make(chan struct{})}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		for _, f := range []*os.File{outR, outW, errR, errW} {
			f.Close()
		}
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	outW.Close()
	errW.Close()
	p.outR, p.errR = outR, errR
	p.readers.Add(2)
	go p.read(outR, false)
	go p.read(errR, true)
	go func() {
		err := cmd.Wait()
		p.state, p.waitErr = cmd.ProcessState, err
		close(p.done)
	}()
	return p, nil
}

func (p *Process) read(r io.ReadCloser, stderr bool) {
	defer p.readers.Done()
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, Line{Stderr: stderr, Text: sc.Text()})
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

// Close kills the process's group with SIGKILL if the process still
// runs, reaps it, and waits for its output to be read (at most 10 seconds
// after the kill: a child that inherited the pipes and escaped the group
// could hold them open). Calling it again does nothing more.
func (p *Process) Close() {
	select {
	case <-p.done:
	default:
		// Negative pid: the whole process group, so helpers the process
		// started die with it.
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	// Children that inherited the pipes may keep them open after the
	// leader exits; kill the group once more and bound the wait.
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	readersDone := make(chan struct{})
	go func() { p.readers.Wait(); close(readersDone) }()
	select {
	case <-readersDone:
	case <-time.After(10 * time.Second):
		p.outR.Close()
		p.errR.Close()
		<-readersDone
	}
}

// Lines returns a copy of the lines captured so far, in arrival order
// (stdout and stderr interleaved as read).
func (p *Process) Lines() []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Line(nil), p.lines...)
}

// Output returns every captured line, stderr lines prefixed with "! ".
func (p *Process) Output() string {
	var b strings.Builder
	for _, l := range p.Lines() {
		if l.Stderr {
			b.WriteString("! ")
		}
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// Mark returns the number of lines captured so far, for WaitForLineFrom.
func (p *Process) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// WaitForLine blocks until a line (on stdout or stderr, captured at any
// time since Start) matches re, and returns its submatches. It returns an
// error when ctx ends or the process exits with no match.
func (p *Process) WaitForLine(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	m, _, err := p.WaitForLineFrom(ctx, 0, re)
	return m, err
}

// WaitForLineFrom is WaitForLine that ignores the first from lines (a
// value from Mark). It also returns the index of the matching line.
func (p *Process) WaitForLineFrom(ctx context.Context, from int, re *regexp.Regexp) ([]string, int, error) {
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if m := re.FindStringSubmatch(p.lines[i].Text); m != nil {
				p.mu.Unlock()
				return m, i, nil
			}
		}
		from = max(from, len(p.lines))
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.exited():
			// Output may still be arriving after the exit; look once more
			// when the readers are done.
			p.readers.Wait()
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if from >= n {
				return nil, -1, fmt.Errorf("process exited (%v) before a line matched %q", p.waitErr, re)
			}
		case <-ctx.Done():
			return nil, -1, fmt.Errorf("no line matched %q: %w", re, ctx.Err())
		}
	}
}

func (p *Process) exited() <-chan struct{} { return p.done }

// Signal sends sig to the process (not its group).
func (p *Process) Signal(sig os.Signal) error {
	return p.Cmd.Process.Signal(sig)
}

// Wait blocks until the process exits and its output is fully read, or ctx
// ends. It returns the exit code (-1 if a signal killed it).
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return -1, fmt.Errorf("wait for %s: %w", p.Cmd.Path, ctx.Err())
	}
	p.readers.Wait()
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		return -1, fmt.Errorf("wait for %s: %w", p.Cmd.Path, p.waitErr)
	}
	return p.state.ExitCode(), nil
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
