package daemon

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
)

// fakeKeepalived stands in for keepalived under a guard: it writes its
// pid file, reports MASTER on the notify FIFO and waits to be stopped.
const fakeKeepalived = `#!/bin/sh
# args: -n -l -G -P -f CONF -p PIDFILE -r VRRPPID
echo $$ > "$8"
printf 'INSTANCE "shoal" MASTER 100\n' > "$(dirname "$6")/notify.fifo"
echo fake keepalived running
exec sleep 300
`

// fakeGuardKeeper is a vipKeeper over a new directory with the notify
// FIFO made, whose keepalived is fakeKeepalived and whose guard is this
// test binary (see TestMain).
func fakeGuardKeeper(t *testing.T) *vipKeeper {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "keepalived")
	if err := os.WriteFile(script, []byte(fakeKeepalived), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "notify.fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &vipKeeper{cfg: config.LBVIP{Dir: dir}, keepalived: script, self: os.Args[0], paths: vipPathsIn(dir),
		log: slog.New(slog.DiscardHandler)}
}

// TestVIPGuardOwners runs a guard (this test binary, see TestMain) over a
// fake keepalived and checks its ownership rules: an owner that joins on
// guard.sock hears the state; the first owner leaving while it stays hears
// "kept" and keepalived runs on; the last owner's socket closed without a
// word (as a killed process's is) stops keepalived and the guard.
func TestVIPGuardOwners(t *testing.T) {
	k := fakeGuardKeeper(t)
	a, guard, err := k.startGuard()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- guard.Wait() }()
	t.Cleanup(func() {
		guard.Process.Kill()
		<-exited
	})
	until := func(c *net.UnixConn, want string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, vipMsgMax)
		var seen []string
		for range 100 {
			kind, arg, err := readMsg(c, buf)
			if err != nil {
				t.Fatalf("waiting for %q: %v (seen %q)", want, err, seen)
			}
			if msg := strings.TrimSpace(kind + " " + arg); msg == want {
				return
			} else {
				seen = append(seen, msg)
			}
		}
		t.Fatalf("no %q in %q", want, seen)
	}
	until(a, "state MASTER")
	pidText, err := os.ReadFile(k.paths.pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatal(err)
	}

	b, checks := k.join()
	if b == nil {
		t.Fatal("join: no guard answered on guard.sock")
	}
	defer b.Close()
	if !checks {
		t.Error("join: the guard's greeting did not say it runs the balancer check (health)")
	}
	if s, _ := k.stateNow(); s != "MASTER" {
		t.Errorf("state after join = %q, want MASTER (the guard's greeting)", s)
	}
	a.CloseWrite()
	until(a, "kept")
	a.Close()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("keepalived (pid %d) gone after the first owner left while another stayed: %v", pid, err)
	}

	// The last owner dies: keepalived is stopped and the guard exits.
	b.Close()
	select {
	case err := <-exited:
		exited <- err
	case <-time.After(20 * time.Second):
		t.Fatal("the guard did not exit after its last owner was gone")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("keepalived (pid %d) after the guard exited: %v, want it gone", pid, err)
	}
	if _, err := os.Stat(k.paths.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("guard.sock left behind: %v", err)
	}
}
