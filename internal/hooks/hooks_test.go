package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// lineSink is an io.Writer that hands every write to the test as it
// arrives.
type lineSink struct {
	ch chan string
	mu sync.Mutex
	b  bytes.Buffer
}

func newSink() *lineSink { return &lineSink{ch: make(chan string, 100)} }

func (s *lineSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	s.mu.Unlock()
	s.ch <- string(p)
	return len(p), nil
}

func (s *lineSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// next waits for the next written line, failing the test after 10s.
func (s *lineSink) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-s.ch:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no output line within 10s")
		return ""
	}
}

func TestRunSuccess(t *testing.T) {
	var out bytes.Buffer
	h := Hook{Name: "pre", Command: `echo "hello $WHO"; echo oops >&2; printf 'no newline'`,
		Env: []string{"WHO=world"}, Dir: t.TempDir()}
	if err := Run(context.Background(), h, &out); err != nil {
		t.Fatal(err)
	}
	want := "[pre] hello world\n[pre] oops\n[pre] no newline\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

func TestRunFailureExitCode(t *testing.T) {
	var out bytes.Buffer
	h := Hook{Name: "migrate", Command: "for i in 1 2 3 4; do echo line $i; done; exit 3", TailLines: 2}
	err := Run(context.Background(), h, &out)
	var herr *HookError
	if !errors.As(err, &herr) {
		t.Fatalf("err = %v, want *HookError", err)
	}
	if herr.ExitCode != 3 || herr.Name != "migrate" || strings.Join(herr.Tail, "|") != "line 3|line 4" {
		t.Errorf("error %+v", herr)
	}
	if got := err.Error(); got != `hook "migrate": exit status 3; last output: "line 4"` {
		t.Errorf("message %q", got)
	}
	if !strings.Contains(out.String(), "[migrate] line 1\n") {
		t.Errorf("output %q", out.String())
	}
}

func TestRunStartError(t *testing.T) {
	err := Run(context.Background(), Hook{Command: "true", Dir: filepath.Join(t.TempDir(), "missing")}, nil)
	var herr *HookError
	if err == nil || errors.As(err, &herr) {
		t.Errorf("err = %v, want a start error", err)
	}
	if err := Run(context.Background(), Hook{}, nil); err == nil {
		t.Error("empty command accepted")
	}
}

// readPid reads a pid file the hook wrote.
func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

// waitGone waits until pid has exited (gone, or a zombie nobody reaped),
// failing the test after 10s.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	err := testenv.WaitFor(testenv.Context(t, 10*time.Second), func() error {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || syscall.Kill(pid, 0) != nil {
			return nil
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			return nil
		}
		return fmt.Errorf("process %d still runs: %s", pid, stat)
	})
	if err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatal(err)
	}
}

func TestRunTimeoutKillsGrandchild(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "pid")
	sink := newSink()
	h := Hook{Name: "slow", Command: `sleep 1000 & echo $! > pid; echo started; wait`, Dir: dir,
		Timeout: 2 * time.Second, KillGrace: time.Second}
	errc := make(chan error, 1)
	go func() { errc <- Run(context.Background(), h, sink) }()
	if l := sink.next(t); l != "[slow] started\n" {
		t.Fatalf("first line %q", l)
	}
	pid := readPid(t, pidfile)
	err := <-errc
	var herr *HookError
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &herr) || herr.ExitCode != -1 {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if !strings.Contains(err.Error(), "hook timed out after 2s") {
		t.Errorf("message %q", err)
	}
	waitGone(t, pid)
}

func TestRunCancelEscalatesToKill(t *testing.T) {
	dir := t.TempDir()
	sink := newSink()
	// The grandchild ignores SIGTERM (ignored signals survive exec).
	h := Hook{Name: "stubborn", Dir: dir, KillGrace: 200 * time.Millisecond,
		Command: `sh -c 'trap "" TERM; echo $$ > pid; exec sleep 1000' & while [ ! -s pid ]; do :; done; echo started; wait`}
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, h, sink) }()
	if l := sink.next(t); l != "[stubborn] started\n" {
		t.Fatalf("first line %q", l)
	}
	pid := readPid(t, filepath.Join(dir, "pid"))
	cause := errors.New("deploy aborted")
	cancel(cause)
	err := <-errc
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "cancelled: deploy aborted") {
		t.Fatalf("err = %v", err)
	}
	waitGone(t, pid)
}

func TestRunStopsWhatTheHookLeftBehind(t *testing.T) {
	dir := t.TempDir()
	// The shell exits 0 at once, but its background child holds the
	// output pipe: Run stops it rather than hang.
	h := Hook{Name: "bg", Command: `sleep 1000 & echo $! > pid; echo done`, Dir: dir, KillGrace: time.Second}
	var out bytes.Buffer
	if err := Run(context.Background(), h, &out); err != nil {
		t.Fatal(err)
	}
	waitGone(t, readPid(t, filepath.Join(dir, "pid")))
	if out.String() != "[bg] done\n" {
		t.Errorf("output %q", out.String())
	}
}

func TestRunRedacts(t *testing.T) {
	var out bytes.Buffer
	h := Hook{Name: "notify", Env: []string{"API_TOKEN=hunter2"},
		Command: `echo "calling with token $API_TOKEN"; echo "bad token: $API_TOKEN" >&2; exit 1`,
		Redact:  func(s string) string { return strings.ReplaceAll(s, "hunter2", "[redacted]") }}
	err := Run(context.Background(), h, &out)
	var herr *HookError
	if !errors.As(err, &herr) || herr.ExitCode != 1 {
		t.Fatalf("err = %v", err)
	}
	all := out.String() + err.Error() + strings.Join(herr.Tail, "\n")
	if strings.Contains(all, "hunter2") {
		t.Errorf("secret printed: %q", all)
	}
	if !strings.Contains(out.String(), "[notify] calling with token [redacted]\n") {
		t.Errorf("output %q", out.String())
	}
}

func TestRunStreamsOutput(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sink := newSink()
	h := Hook{Name: "h", Dir: dir, Command: `echo first; read line < fifo; echo "got $line"`}
	errc := make(chan error, 1)
	go func() { errc <- Run(context.Background(), h, sink) }()
	// The first line arrives while the hook still waits for the test.
	if l := sink.next(t); l != "[h] first\n" {
		t.Fatalf("first line %q", l)
	}
	select {
	case err := <-errc:
		t.Fatalf("hook ended before it was released: %v", err)
	default:
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if l := sink.next(t); l != "[h] got go\n" {
		t.Errorf("second line %q", l)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestRunSplitsLongLines(t *testing.T) {
	var out bytes.Buffer
	h := Hook{Name: "x", Command: fmt.Sprintf(`head -c %d /dev/zero | tr '\0' a; echo; echo end`, maxLine+10)}
	if err := Run(context.Background(), h, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 || len(lines[0]) != len("[x] ")+maxLine || lines[1] != "[x] "+strings.Repeat("a", 10) || lines[2] != "[x] end" {
		t.Errorf("%d lines, lengths %d", len(lines), len(lines[0]))
	}
}

func TestRunAllStopsAtFirstFailure(t *testing.T) {
	var out bytes.Buffer
	err := RunAll(context.Background(), []Hook{
		{Name: "one", Command: "echo 1"},
		{Name: "two", Command: "echo 2; exit 4"},
		{Name: "three", Command: "echo 3"},
	}, &out)
	var herr *HookError
	if !errors.As(err, &herr) || herr.Name != "two" || herr.ExitCode != 4 {
		t.Fatalf("err = %v", err)
	}
	if out.String() != "[one] 1\n[two] 2\n" {
		t.Errorf("output %q", out.String())
	}
}

func TestParseStat(t *testing.T) {
	cases := []struct {
		in    string
		state byte
		pgrp  int
		ok    bool
	}{
		{"123 (sleep) S 1 120 120 0", 'S', 120, true},
		{"123 (a) b) (c) Z 1 77 77", 'Z', 77, true},
		{"123 (x", 0, 0, false},
		{"123 (x) S 1", 0, 0, false},
		{"123 (x) SS 1 5", 0, 0, false},
		{"123 (x) S 1 notanumber", 0, 0, false},
	}
	for _, tc := range cases {
		st, pg, ok := parseStat([]byte(tc.in))
		if st != tc.state || pg != tc.pgrp || ok != tc.ok {
			t.Errorf("parseStat(%q) = %c %d %v", tc.in, st, pg, ok)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	for _, s := range []string{"1 (init) S 0 1 1 0 -1", "9 ((x)) Z 1 9 9", "", ")", "1 (a) R 0 -5"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, _, ok := parseStat(b)
		if ok && (st == ' ' || !bytes.Contains(b, []byte{')'})) {
			t.Fatalf("parseStat(%q) accepted state %q", b, st)
		}
	})
}
