package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// detachedData returns a data directory whose detached instances are all ended when the
// test ends, whatever happened: a default-mode Local's CleanLeftovers kills every shim
// and group still recorded there.
func detachedData(t *testing.T) string {
	t.Helper()
	data := t.TempDir()
	t.Cleanup(func() {
		l, err := NewLocal(Options{DataDir: data})
		if err != nil {
			t.Error(err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := l.CleanLeftovers(ctx); err != nil {
			t.Errorf("clean leftovers: %v", err)
		}
		l.Close(ctx)
	})
	return data
}

// newDetached returns a detached Local on data, closed (its instances left running) at
// the end of the test unless the test closed it.
func newDetached(t *testing.T, data string) *Local {
	t.Helper()
	l, err := NewLocal(Options{DataDir: data, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDetached(t, l) })
	return l
}

// closeDetached closes l and returns the Exits it delivered meanwhile.
func closeDetached(t *testing.T, l *Local) []Exit {
	t.Helper()
	got := make(chan []Exit)
	go func() {
		var xs []Exit
		for x := range l.Exits() {
			xs = append(xs, x)
		}
		got <- xs
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	if n := len(l.List()); n != 0 {
		t.Errorf("%d instances listed after Close", n)
	}
	return <-got
}

// getJSON fetches the serve helper's report of its environment.
func getJSON(addr string) (map[string]string, error) {
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var got map[string]string
	return got, json.NewDecoder(resp.Body).Decode(&got)
}

func readRecord(t *testing.T, l *Local, id string) pidRecord {
	t.Helper()
	b, err := os.ReadFile(l.pidPath(id))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := parsePidRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestDetachedOutlivesClose starts an instance in detached mode, closes the Local (the
// instance keeps serving, no Exit), adopts it with a new Local (same pid, port and
// labels), and stops it: one Exit, Stopped, with the app's own status.
func TestDetachedOutlivesClose(t *testing.T) {
	data := detachedData(t)
	rel := t.TempDir()
	a := newDetached(t, data)
	info, err := a.Start(context.Background(), Spec{
		ID: "web-1", Dir: rel, Command: selfCommand(t),
		Env:    []string{"RUNTIME_TEST_HELPER=serve", "EXTRA=yes", "ECHO=swordfish-42"},
		Labels: map[string]string{"app": "web"}, Secrets: []string{"swordfish-42"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	testenv.Eventually(t, 20*time.Second, func() (err error) {
		got, err = getJSON(info.Addr)
		return err
	})
	want := map[string]string{
		"port": strconv.Itoa(info.Port), "id": "web-1", "dir": info.WorkDir,
		"tmp": filepath.Join(info.WorkDir, "tmp"), "cwd": rel, "extra": "yes",
		"pid": strconv.Itoa(info.PID), // the app is the shim's direct child, exec'd by sh
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if st, err := a.Stats("web-1"); err != nil || st.Processes != 1 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	if _, err := a.Start(context.Background(), Spec{ID: "web-1", Dir: rel, Command: "true"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate start: %v", err)
	}
	shimPid := readRecord(t, a, "web-1").Shim.PID
	if xs := closeDetached(t, a); len(xs) != 0 {
		t.Fatalf("Close reported exits %+v", xs)
	}
	if _, err := getJSON(info.Addr); err != nil {
		t.Fatalf("instance no longer serves after Close: %v", err)
	}
	// Not adopted yet: the id is taken.
	b := newDetached(t, data)
	if _, err := b.Start(context.Background(), Spec{ID: "web-1", Dir: rel, Command: "true"}); !errors.Is(err, ErrExists) {
		t.Fatalf("start of an unadopted id: %v", err)
	}
	infos, err := b.Adopt(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].PID != info.PID || infos[0].Addr != info.Addr || infos[0].Labels["app"] != "web" ||
		!infos[0].StartedAt.Equal(info.StartedAt) {
		t.Fatalf("adopted %+v, want %+v", infos, info)
	}
	if l := b.List(); len(l) != 1 || l[0].ID != "web-1" {
		t.Fatalf("List = %+v", l)
	}
	if err := b.Stop(context.Background(), "web-1"); err != nil {
		t.Fatal(err)
	}
	x := nextExit(t, b)
	if x.ID != "web-1" || x.PID != info.PID || x.Code != 0 || !x.Stopped || x.Killed || x.Labels["app"] != "web" {
		t.Fatalf("exit = %+v", x)
	}
	if !strings.Contains(x.LogTail, "bye") || !strings.Contains(x.LogTail, "echo "+RedactedMark) {
		t.Fatalf("log tail = %q", x.LogTail)
	}
	if err := processGone(info.PID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.pidPath("web-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid record left: %v", err)
	}
	// This process started the shim; the Local that adopted it reaped it.
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, err := readStat(shimPid); err == nil {
			return fmt.Errorf("shim %d not reaped", shimPid)
		}
		return nil
	})
	log, err := os.ReadFile(info.LogPath)
	if err != nil || strings.Contains(string(log), "swordfish-42") {
		t.Fatalf("log holds the secret (%v): %q", err, log)
	}
	if xs := closeDetached(t, b); len(xs) != 0 {
		t.Fatalf("extra exits %+v", xs)
	}
}

// TestDetachedOutlivesKilledSupervisor runs a supervisor in a subprocess that starts a
// detached instance and is then killed with SIGKILL: the instance keeps serving, and a
// new Local adopts it and stops it.
func TestDetachedOutlivesKilledSupervisor(t *testing.T) {
	data := detachedData(t)
	host := exec.Command(selfCommand(t))
	host.Env = append(os.Environ(), "RUNTIME_TEST_HELPER=dhost", "RUNTIME_TEST_DATA="+data)
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
	var pid int
	var addr string
	if _, err := fmt.Sscanf(line, "ready %d %s", &pid, &addr); err != nil {
		t.Fatalf("host said %q: %v", line, err)
	}
	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	host.Wait()
	testenv.Eventually(t, 20*time.Second, func() error {
		_, err := getJSON(addr)
		return err
	})
	if err := processGone(pid); err == nil {
		t.Fatal("the instance died with its supervisor")
	}

	l := newDetached(t, data)
	infos, err := l.Adopt(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].ID != "web" || infos[0].PID != pid || infos[0].Addr != addr {
		t.Fatalf("adopted %+v, want web with pid %d at %s", infos, pid, addr)
	}
	if got, err := getJSON(addr); err != nil || got["pid"] != strconv.Itoa(pid) {
		t.Fatalf("instance answers %v, %v", got, err)
	}
	if err := l.Stop(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	x := nextExit(t, l)
	if x.ID != "web" || x.PID != pid || x.Code != 0 || !x.Stopped {
		t.Fatalf("exit = %+v", x)
	}
	if strings.Contains(x.LogTail, "hunter2-secret") || !strings.Contains(x.LogTail, "echo "+RedactedMark) {
		t.Fatalf("log tail = %q", x.LogTail)
	}
	if err := processGone(pid); err != nil {
		t.Fatal(err)
	}
	if xs := closeDetached(t, l); len(xs) != 0 {
		t.Fatalf("extra exits %+v", xs)
	}
}

// TestDetachedExitWhileUnwatched lets an instance end while no Local watches it: the
// next Adopt reports it once, with its real status and output; a later one does not.
func TestDetachedExitWhileUnwatched(t *testing.T) {
	data := detachedData(t)
	gate := filepath.Join(t.TempDir(), "gate")
	a := newDetached(t, data)
	info, err := a.Start(context.Background(), Spec{ID: "job", Dir: t.TempDir(), Labels: map[string]string{"app": "batch"},
		Command: `echo started; while [ ! -e ` + gate + ` ]; do sleep 0.01; done; echo finished; exit 7`})
	if err != nil {
		t.Fatal(err)
	}
	shimPid := readRecord(t, a, "job").Shim.PID
	closeDetached(t, a)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Until the shim has exited, Adopt would adopt it and then see it end.
	testenv.Eventually(t, 20*time.Second, func() error { return processGone(shimPid) })
	syscall.Wait4(shimPid, nil, 0, nil) // this process started it: reap it

	b := newDetached(t, data)
	infos, err := b.Adopt(context.Background())
	if err != nil || len(infos) != 0 {
		t.Fatalf("Adopt = %+v, %v; want nothing running", infos, err)
	}
	x := nextExit(t, b)
	if x.ID != "job" || x.PID != info.PID || x.Code != 7 || x.Stopped || x.Labels["app"] != "batch" {
		t.Fatalf("exit = %+v", x)
	}
	if !strings.Contains(x.LogTail, "started") || !strings.Contains(x.LogTail, "finished") {
		t.Fatalf("log tail = %q", x.LogTail)
	}
	if xs := closeDetached(t, b); len(xs) != 0 {
		t.Fatalf("extra exits %+v", xs)
	}
	c := newDetached(t, data)
	if infos, err := c.Adopt(context.Background()); err != nil || len(infos) != 0 {
		t.Fatalf("second Adopt = %+v, %v", infos, err)
	}
	if xs := closeDetached(t, c); len(xs) != 0 {
		t.Fatalf("the exit was reported again: %+v", xs)
	}
}

// TestDetachedStopEscalates checks both escalations: the shim's own after StopTimeout,
// and the Local's when Stop's ctx ends first.
func TestDetachedStopEscalates(t *testing.T) {
	data := detachedData(t)
	l := newDetached(t, data)
	for _, c := range []struct {
		id      string
		timeout time.Duration
		ctx     time.Duration
	}{{"shim-timer", 200 * time.Millisecond, time.Minute}, {"ctx-ends", time.Minute, 200 * time.Millisecond}} {
		info, err := l.Start(context.Background(), Spec{ID: c.id, Dir: t.TempDir(), StopTimeout: c.timeout,
			Command: `trap '' TERM; echo ready; while :; do sleep 1; done`})
		if err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, func() error { return fileContains(info.LogPath, "ready") })
		ctx, cancel := context.WithTimeout(context.Background(), c.ctx)
		err = l.Stop(ctx, c.id)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		x := nextExit(t, l)
		if x.ID != c.id || !x.Stopped || !x.Killed || x.Signal != "SIGKILL" || x.Code != -1 {
			t.Fatalf("%s: exit = %+v", c.id, x)
		}
		if err := processGone(info.PID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDetachedTailFollows follows an instance's output through its shim, redacted, until
// the instance ends.
func TestDetachedTailFollows(t *testing.T) {
	data := detachedData(t)
	l := newDetached(t, data)
	gate := filepath.Join(t.TempDir(), "gate")
	_, err := l.Start(context.Background(), Spec{ID: "f", Dir: t.TempDir(), Secrets: []string{"opensesame"},
		Command: `echo first; while [ ! -e ` + gate + ` ]; do sleep 0.01; done; printf 'key=open'; sleep 0.05; echo 'sesame!'; echo last`})
	if err != nil {
		t.Fatal(err)
	}
	out := followPastGate(t, l, "f", gate)
	if want := "first\nkey=" + RedactedMark + "!\nlast\n"; out != want {
		t.Fatalf("followed %q, want %q", out, want)
	}
	if x := nextExit(t, l); x.ID != "f" || x.Code != 0 {
		t.Fatalf("exit = %+v", x)
	}
}

// TestAdoptCleansWhatItCannotAdopt: a record whose pid is reused by an unrelated live
// process is neither adopted nor killed; a damaged record is removed; the group of an
// instance whose shim was killed is killed.
func TestAdoptCleansWhatItCannotAdopt(t *testing.T) {
	data := detachedData(t)
	a := newDetached(t, data)
	info, err := a.Start(context.Background(), Spec{ID: "orphan", Dir: t.TempDir(),
		Command: `sleep 1000 & echo $! > "$SHOAL_INSTANCE_DIR/child.pid"; wait`})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	testenv.Eventually(t, 10*time.Second, func() (err error) {
		child, err = readPidFile(filepath.Join(info.WorkDir, "child.pid"))
		return err
	})
	shimPid := readRecord(t, a, "orphan").Shim.PID
	closeDetached(t, a)
	// The shim dies without recording an end; its app's leader dies with it, the
	// grandchild lives on.
	if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	syscall.Wait4(shimPid, &ws, 0, nil) // this process started it: reap it
	testenv.Eventually(t, 10*time.Second, func() error { return processGone(info.PID) })
	if err := processGone(child); err == nil {
		t.Fatal("grandchild died with the shim; the test no longer tests the cleaning")
	}

	other := exec.Command("sleep", "1000")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	st, err := readStat(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	pid := other.Process.Pid
	b := newDetached(t, data)
	fake := pidRecord{Version: pidRecordVersion, ID: "reused", PID: pid, PGID: pid, StartTicks: st.StartTime + 1,
		BootID: bootID(), Shim: &shimRecord{PID: pid, StartTicks: st.StartTime + 1, Port: 1, Dir: "/", Command: "x",
			StopTimeout: time.Second}}
	if err := b.writePidRecord(fake); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.pidPath("damaged"), []byte(`{"version":1,"id":"dam`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	infos, err := b.Adopt(ctx)
	if err != nil || len(infos) != 0 {
		t.Fatalf("Adopt = %+v, %v; want nothing", infos, err)
	}
	if err := processGone(pid); err == nil {
		t.Fatal("Adopt killed a process that is not ours")
	}
	if err := processGone(child); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(b.pidDir()); err != nil || len(ents) != 0 {
		t.Fatalf("pid records left: %v %v", ents, err)
	}
	if xs := closeDetached(t, b); len(xs) != 0 {
		t.Fatalf("exits %+v for instances that were cleaned", xs)
	}
}

// TestCleanLeftoversEndsShims: a default-mode Local's CleanLeftovers ends the shims of a
// detached run and their instances.
func TestCleanLeftoversEndsShims(t *testing.T) {
	data := detachedData(t)
	a := newDetached(t, data)
	info, err := a.Start(context.Background(), Spec{ID: "left", Dir: t.TempDir(), Command: "sleep 1000"})
	if err != nil {
		t.Fatal(err)
	}
	shimPid := readRecord(t, a, "left").Shim.PID
	closeDetached(t, a)
	l := newLocal(t, Options{DataDir: data})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.CleanLeftovers(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error { return processGone(shimPid) })
	syscall.Wait4(shimPid, nil, 0, nil) // this process started it: reap it
	testenv.Eventually(t, 10*time.Second, func() error { return processGone(info.PID) })
	if ents, err := os.ReadDir(l.pidDir()); err != nil || len(ents) != 0 {
		t.Fatalf("pid records left: %v %v", ents, err)
	}
}

// TestDetachedPruneSparesUnadopted: pruning after exits removes old folders of ended
// instances but never the folder of an instance whose shim still runs unadopted.
func TestDetachedPruneSparesUnadopted(t *testing.T) {
	data := detachedData(t)
	a := newDetached(t, data)
	long, err := a.Start(context.Background(), Spec{ID: "a-long", Dir: t.TempDir(), Command: "sleep 1000"})
	if err != nil {
		t.Fatal(err)
	}
	closeDetached(t, a)
	b, err := NewLocal(Options{DataDir: data, Detached: true, KeepStopped: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDetached(t, b) })
	for i := range 3 {
		id := fmt.Sprintf("job-%d", i)
		if _, err := b.Start(context.Background(), Spec{ID: id, Dir: t.TempDir(), Command: "echo " + id}); err != nil {
			t.Fatal(err)
		}
		if x := nextExit(t, b); x.ID != id || x.Code != 0 {
			t.Fatalf("exit = %+v", x)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if got, want := instanceDirs(t, data), []string{"a-long", "job-2"}; !slices.Equal(got, want) {
			return fmt.Errorf("instance folders %v, want %v", got, want)
		}
		return nil
	})
	infos, err := b.Adopt(context.Background())
	if err != nil || len(infos) != 1 || infos[0].PID != long.PID {
		t.Fatalf("Adopt = %+v, %v", infos, err)
	}
	if err := b.Stop(context.Background(), "a-long"); err != nil {
		t.Fatal(err)
	}
	if x := nextExit(t, b); x.ID != "a-long" || !x.Stopped {
		t.Fatalf("exit = %+v", x)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if got, want := instanceDirs(t, data), []string{"a-long"}; !slices.Equal(got, want) {
			return fmt.Errorf("instance folders %v, want %v", got, want)
		}
		return nil
	})
}
