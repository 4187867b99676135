package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

func selfCommand(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestStartServeStop(t *testing.T) {
	l := newLocal(t, Options{})
	rel := t.TempDir()
	info, err := l.Start(context.Background(), Spec{
		ID: "web-1", Dir: rel, Command: selfCommand(t),
		Env:    []string{"RUNTIME_TEST_HELPER=serve", "EXTRA=yes", "PORT=1"},
		Labels: map[string]string{"app": "web"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	testenv.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + info.Addr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&got)
	})
	want := map[string]string{
		"port": strconv.Itoa(info.Port), "id": "web-1", "dir": info.WorkDir,
		"tmp": filepath.Join(info.WorkDir, "tmp"), "cwd": rel, "extra": "yes",
		"pid": strconv.Itoa(info.PID), // simple command: exec'd, so the app is the direct child
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if list := l.List(); len(list) != 1 || list[0].ID != "web-1" || list[0].Labels["app"] != "web" {
		t.Fatalf("List = %+v", list)
	}
	st, err := l.Stats("web-1")
	if err != nil || st.Processes != 1 || st.RSSBytes <= 0 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	if _, err := l.Start(context.Background(), Spec{ID: "web-1", Dir: rel, Command: "true"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate start: %v", err)
	}
	if err := l.Stop(context.Background(), "web-1"); err != nil {
		t.Fatal(err)
	}
	x := nextExit(t, l)
	if x.ID != "web-1" || x.Code != 0 || !x.Stopped || x.Killed || x.Labels["app"] != "web" {
		t.Fatalf("exit = %+v", x)
	}
	// The last line, printed after SIGTERM, is in the log before the exit is reported.
	if err := fileContains(info.LogPath, "bye"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.pidPath("web-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid record left: %v", err)
	}
	if err := l.Stop(context.Background(), "web-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stop after exit: %v", err)
	}
}

func TestNaturalExitReportedOnceWithOutput(t *testing.T) {
	l := newLocal(t, Options{})
	rel := t.TempDir()
	for round := range 2 { // the id is free again after the exit
		_, err := l.Start(context.Background(), Spec{ID: "job", Dir: rel,
			Command: `echo hello; echo oops >&2; sleep 1000 & exit 7`})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		x := nextExit(t, l)
		if x.ID != "job" || x.Code != 7 || x.Stopped || x.Signal != "" {
			t.Fatalf("exit = %+v", x)
		}
		if !strings.Contains(x.LogTail, "hello") || !strings.Contains(x.LogTail, "oops") {
			t.Fatalf("log tail = %q", x.LogTail)
		}
	}
	select {
	case x := <-l.Exits():
		t.Fatalf("extra exit %+v", x)
	default:
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	l := newLocal(t, Options{})
	info, err := l.Start(context.Background(), Spec{ID: "stubborn", Dir: t.TempDir(),
		Command: `trap '' TERM; echo ready; while :; do sleep 1; done`, StopTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error { return fileContains(info.LogPath, "ready") })
	if err := l.Stop(context.Background(), "stubborn"); err != nil {
		t.Fatal(err)
	}
	x := nextExit(t, l)
	if !x.Stopped || !x.Killed || x.Signal != "SIGKILL" || x.Code != -1 {
		t.Fatalf("exit = %+v", x)
	}
	if err := processGone(info.PID); err != nil {
		t.Fatal(err)
	}
}

func TestStopKillsWholeGroup(t *testing.T) {
	l := newLocal(t, Options{})
	// The grandchild ignores SIGTERM; the shell dies at once. Stop must wait for the
	// group, then SIGKILL the grandchild.
	info, err := l.Start(context.Background(), Spec{ID: "tree", Dir: t.TempDir(),
		// The child writes its own pid only after its trap is set, so a SIGTERM that
		// comes first cannot find it still killable by TERM.
		Command:     `sh -c 'trap "" TERM; echo $$ > "$SHOAL_INSTANCE_DIR/child.pid"; exec sleep 1000' & wait`,
		StopTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	testenv.Eventually(t, 10*time.Second, func() (err error) {
		child, err = readPidFile(filepath.Join(info.WorkDir, "child.pid"))
		return err
	})
	if st, err := l.Stats("tree"); err != nil || st.Processes != 2 {
		t.Fatalf("Stats = %+v, %v; want 2 processes", st, err)
	}
	if err := l.Stop(context.Background(), "tree"); err != nil {
		t.Fatal(err)
	}
	x := nextExit(t, l)
	if !x.Stopped || !x.Killed {
		t.Fatalf("exit = %+v", x)
	}
	if err := processGone(child); err != nil {
		t.Fatal(err)
	}
}

func TestNaturalExitKillsStragglers(t *testing.T) {
	l := newLocal(t, Options{})
	info, err := l.Start(context.Background(), Spec{ID: "leaky", Dir: t.TempDir(),
		Command: `sleep 1000 & echo $! > "$SHOAL_INSTANCE_DIR/child.pid"; exit 0`})
	if err != nil {
		t.Fatal(err)
	}
	x := nextExit(t, l)
	if x.Code != 0 || x.Stopped {
		t.Fatalf("exit = %+v", x)
	}
	child, err := readPidFile(filepath.Join(info.WorkDir, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error { return processGone(child) })
}

func TestLogRotationKeepsEveryLine(t *testing.T) {
	l := newLocal(t, Options{LogMaxBytes: 4096, LogFiles: 3})
	info, err := l.Start(context.Background(), Spec{ID: "chatty", Dir: t.TempDir(),
		Command: `i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done`})
	if err != nil {
		t.Fatal(err)
	}
	if x := nextExit(t, l); x.Code != 0 {
		t.Fatalf("exit = %+v", x)
	}
	for i, name := range []string{"out.log", "out.log.1", "out.log.2"} {
		fi, err := os.Stat(filepath.Join(info.WorkDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 4096 || (i > 0 && fi.Size() < 4000) {
			t.Fatalf("%s has %d bytes", name, fi.Size())
		}
	}
	if _, err := os.Stat(filepath.Join(info.WorkDir, "out.log.3")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("out.log.3 kept: %v", err)
	}
	// The last 400 lines span out.log and out.log.1 and are consecutive and whole.
	var buf bytes.Buffer
	if err := l.Tail(context.Background(), "chatty", 400, false, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("tail gave %d lines", len(lines))
	}
	for i, line := range lines {
		if want := fmt.Sprintf("line %d", 1600+i); line != want {
			t.Fatalf("line %d = %q, want %q", i, line, want)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// followPastGate follows instance id's output (last 10 lines, then new ones) until its
// first line "first" is seen, makes the file gate, which the instance waits for, and
// returns everything followed once the instance has ended and the follow with it.
func followPastGate(t *testing.T, l *Local, id, gate string) string {
	t.Helper()
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- l.Tail(context.Background(), id, 10, true, &out) }()
	testenv.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), "first") {
			return errors.New("no first line yet")
		}
		return nil
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not end with the instance")
	}
	return out.String()
}

func TestTailFollowsUntilExit(t *testing.T) {
	l := newLocal(t, Options{LogMaxBytes: 64, LogFiles: 2})
	gate := filepath.Join(t.TempDir(), "gate")
	_, err := l.Start(context.Background(), Spec{ID: "f", Dir: t.TempDir(),
		Command: `echo first; while [ ! -e ` + gate + ` ]; do sleep 0.01; done; i=0; while [ $i -lt 20 ]; do echo "after $i"; i=$((i+1)); done`})
	if err != nil {
		t.Fatal(err)
	}
	out := followPastGate(t, l, "f", gate)
	// Small files rotate often; following must still see every line in order.
	sc := bufio.NewScanner(strings.NewReader(out))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	want := []string{"first"}
	for i := range 20 {
		want = append(want, fmt.Sprintf("after %d", i))
	}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("followed %q", lines)
	}
	nextExit(t, l)
}

func TestStartErrors(t *testing.T) {
	l := newLocal(t, Options{})
	ctx := context.Background()
	for _, spec := range []Spec{
		{ID: "../x", Dir: t.TempDir(), Command: "true"},
		{ID: "", Dir: t.TempDir(), Command: "true"},
		{ID: "ok", Dir: t.TempDir()},
		{ID: "ok", Dir: filepath.Join(t.TempDir(), "missing"), Command: "true"},
	} {
		if _, err := l.Start(ctx, spec); err == nil {
			t.Errorf("Start(%+v) succeeded", spec)
		}
	}
	if len(l.List()) != 0 {
		t.Fatal("failed starts left instances")
	}
	if err := l.Stop(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stop unknown: %v", err)
	}
	if _, err := l.Stats("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stats unknown: %v", err)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	l, err := NewLocal(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for i := range 3 {
		info, err := l.Start(context.Background(), Spec{ID: "s" + strconv.Itoa(i), Dir: t.TempDir(), Command: "sleep 1000"})
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, info.PID)
	}
	exits := make(chan []Exit)
	go func() {
		var xs []Exit
		for x := range l.Exits() {
			xs = append(xs, x)
		}
		exits <- xs
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	xs := <-exits
	if len(xs) != 3 {
		t.Fatalf("got %d exits, want 3", len(xs))
	}
	for _, x := range xs {
		if !x.Stopped || x.Signal != "SIGTERM" {
			t.Errorf("exit = %+v", x)
		}
	}
	for _, pid := range pids {
		if err := processGone(pid); err != nil {
			t.Error(err)
		}
	}
	if _, err := l.Start(context.Background(), Spec{ID: "late", Dir: t.TempDir(), Command: "true"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
}

// TestNoInstanceOutlivesKilledHost runs a stand-in for Shoal that starts two instances and
// is then killed with SIGKILL. The direct children die with it (Pdeathsig); a grandchild,
// which Pdeathsig cannot reach, is killed by CleanLeftovers of the next run.
func TestNoInstanceOutlivesKilledHost(t *testing.T) {
	data := t.TempDir()
	host := exec.Command(selfCommand(t))
	host.Env = append(os.Environ(), "RUNTIME_TEST_HELPER=host", "RUNTIME_TEST_DATA="+data)
	stdout, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Process.Kill(); host.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("host said %q: %v", line, err)
	}
	var simple, tree int
	if _, err := fmt.Sscanf(line, "ready %d %d", &simple, &tree); err != nil {
		t.Fatalf("host said %q: %v", line, err)
	}
	var child int
	testenv.Eventually(t, 10*time.Second, func() (err error) {
		child, err = readPidFile(filepath.Join(data, "instances", "tree", "child.pid"))
		return err
	})
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })

	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	host.Wait()
	testenv.Eventually(t, 10*time.Second, func() error { return processGone(simple) })
	testenv.Eventually(t, 10*time.Second, func() error { return processGone(tree) })
	if err := processGone(child); err == nil {
		t.Fatal("grandchild died without CleanLeftovers; the test no longer tests it")
	}

	l := newLocal(t, Options{DataDir: data})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.CleanLeftovers(ctx); err != nil {
		t.Fatal(err)
	}
	if err := processGone(child); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(l.pidDir())
	if err != nil || len(ents) != 0 {
		t.Fatalf("pid records left: %v %v", ents, err)
	}
}

func TestCleanLeftoversSparesReusedPid(t *testing.T) {
	l := newLocal(t, Options{})
	// A live process that is not ours, recorded with a wrong start time: must survive.
	other := exec.Command("sleep", "1000")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	pid := other.Process.Pid
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	rec := pidRecord{Version: pidRecordVersion, ID: "old", PID: pid, PGID: pid, StartTicks: st.StartTime + 1, BootID: bootID()}
	if err := l.writePidRecord(rec); err != nil {
		t.Fatal(err)
	}
	if err := l.CleanLeftovers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := processGone(pid); err == nil {
		t.Fatal("CleanLeftovers killed a process that is not ours")
	}
	// The same record with the right start time is ours: killed.
	rec.StartTicks = st.StartTime
	if err := l.writePidRecord(rec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.CleanLeftovers(ctx); err != nil {
		t.Fatal(err)
	}
	other.Wait() // reap, so the pid is gone rather than a zombie of ours
	if err := processGone(pid); err != nil {
		t.Fatal(err)
	}
}

// TestQuickExitLeavesNoInstance starts instances that exit at once: the
// exit may be observed before Start has recorded the instance, and a
// recorded instance must not outlive its Exit (it would then be listed,
// block its id and keep its folder from pruning forever).
func TestQuickExitLeavesNoInstance(t *testing.T) {
	l := newLocal(t, Options{KeepStopped: -1})
	dir := t.TempDir()
	for i := range 200 {
		id := fmt.Sprintf("quick-%d", i)
		if _, err := l.Start(context.Background(), Spec{ID: id, Dir: dir, Command: "exit 0"}); err != nil {
			t.Fatal(err)
		}
		if x := nextExit(t, l); x.ID != id {
			t.Fatalf("exit of %s, want %s", x.ID, id)
		}
		if got := l.List(); len(got) != 0 {
			t.Fatalf("start %d: %s still listed after its exit", i, got[0].ID)
		}
	}
}
