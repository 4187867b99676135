package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// trackFile is the track file's content and inode (0 when absent).
func trackFile(t *testing.T, path string) (string, uint64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", 0
	}
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), fi.Sys().(*syscall.Stat_t).Ino
}

// TestVIPHealthFallRise drives the guard's checker through a script of
// check results (fake time: synctest) and checks after each one the
// track file keepalived reads: two failures in a row fault the node, two
// passes bring it back, a single one of either changes nothing, "no
// target yet" counts as neither; the file is replaced (a new inode, no
// temporary left) only when the state changes, and a write that fails
// is made again after the next check.
func TestVIPHealthFallRise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "health.track")
		results := make(chan error)
		var notes []string
		alive := 0
		h := newVIPHealth(file, func(ctx context.Context) error {
			select {
			case err := <-results:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}, func(msg string) { notes = append(notes, msg) })
		if err := h.sync(); err != nil {
			t.Fatal(err)
		}
		content, ino := trackFile(t, file)
		if content != "0\n" {
			t.Fatalf("track file at start = %q, want 0 (healthy)", content)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.run(ctx, func() { alive++ })
		}()
		defer func() {
			cancel()
			<-done
		}()

		fail := errors.New("balancer check: connection refused")
		steps := []struct {
			result error
			want   string // the file's value after the check
			write  bool   // a new file (inode) expected
		}{
			{nil, "0\n", false},
			{fail, "0\n", false}, // one failure: still healthy
			{nil, "0\n", false},  // the count starts again
			{fail, "0\n", false},
			{errNoCheckTarget, "0\n", false}, // neither pass nor failure
			{fail, "1\n", true},              // second failure in a row: FAULT
			{fail, "1\n", false},             // no write while the state holds
			{nil, "1\n", false},              // one pass: still FAULT
			{fail, "1\n", false},
			{nil, "1\n", false},
			{nil, "0\n", true}, // second pass in a row: healthy
			{nil, "0\n", false},
		}
		for i, s := range steps {
			results <- s.result
			synctest.Wait()
			got, gotIno := trackFile(t, file)
			if got != s.want {
				t.Fatalf("step %d (%v): track file = %q, want %q; notes %q", i, s.result, got, s.want, notes)
			}
			if (gotIno != ino) != s.write {
				t.Fatalf("step %d (%v): file replaced = %v, want %v", i, s.result, gotIno != ino, s.write)
			}
			ino = gotIno
			if alive != i+1 {
				t.Fatalf("step %d: alive called %d times, want %d (once per check)", i, alive, i+1)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("files in the directory: %v, want health.track alone (no temporary left)", entries)
		}
		for _, want := range []string{"failed (1 of 2 before FAULT): " + fail.Error(), "failed 2 times in a row: FAULT", "passed 2 times in a row: healthy"} {
			if !strings.Contains(strings.Join(notes, "\n"), want) {
				t.Errorf("notes lack %q: %q", want, notes)
			}
		}

		// A write that fails (a directory where the file goes) is noted
		// and made again after the next check.
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(file, 0o700); err != nil {
			t.Fatal(err)
		}
		notes = nil
		results <- fail
		results <- fail
		synctest.Wait()
		if !strings.Contains(strings.Join(notes, "\n"), "tried again after the next check") {
			t.Fatalf("a failed write was not noted: %q", notes)
		}
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		results <- fail
		synctest.Wait()
		if got, _ := trackFile(t, file); got != "1\n" {
			t.Fatalf("after the failed write, the next check left %q, want 1", got)
		}
	})
}

// TestVIPGuardChecksBalancer runs a guard (this test binary) over a fake
// keepalived and an admin API that answers GET /v1/lb/status with a
// token: once an owner tells it the API ("check URL TOKEN"), health.track
// says 1 after the API stops answering in time (a wedged balancer) and 0
// once it answers again; the guard says "alive" after its checks, and the
// greeting of an owner joining on guard.sock names the track file.
func TestVIPGuardChecksBalancer(t *testing.T) {
	k := fakeGuardKeeper(t)
	// A 1 left by an earlier run: the guard starts keepalived healthy.
	if err := os.WriteFile(k.paths.track, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var wedged atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/lb/status", func(w http.ResponseWriter, r *http.Request) {
		if wedged.Load() {
			<-r.Context().Done() // the check gives up first
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"pools":[]}`)
	})
	srv := httptest.NewServer(adminapi.RequireToken("tok", mux))
	defer srv.Close()

	k.setCheck(srv.Listener.Addr(), "tok")
	if !strings.HasPrefix(k.checkMsg, "check http://127.0.0.1:") {
		t.Fatalf("check message %q", k.checkMsg)
	}
	a, guard, err := k.startGuard()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- guard.Wait() }()
	defer func() {
		a.Close()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			guard.Process.Kill()
			<-exited
		}
	}()
	if err := writeMsg(a, k.checkMsg); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 2*time.Minute)
	// Read the guard's messages in the test's goroutine, until the track
	// file holds want, counting "alive".
	buf := make([]byte, vipMsgMax)
	alive := 0
	until := func(want string) {
		t.Helper()
		var last string
		for ctx.Err() == nil {
			a.SetReadDeadline(time.Now().Add(5 * time.Second))
			kind, arg, err := readMsg(a, buf)
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("guard: %v (track file %q)", err, last)
			}
			if kind == "alive" {
				alive++
			}
			if kind == "exit" {
				t.Fatalf("guard exited: %s", arg)
			}
			if last, _ = trackFile(t, k.paths.track); last == want {
				return
			}
		}
		t.Fatalf("track file %q, want %q", last, want)
	}
	until("0\n")
	wedged.Store(true)
	until("1\n")
	wedged.Store(false)
	until("0\n")
	// Four checks at least made the file 1 then 0 (the first 0 is the
	// guard's write at start); each says alive after its write, so the
	// last one's may not have been read yet.
	if alive < 3 {
		t.Errorf("%d alive messages read over at least four checks, want 3 or more", alive)
	}

	b, checks := k.join()
	if b == nil {
		t.Fatal("join: no guard answered on guard.sock")
	}
	b.Close()
	if !checks {
		t.Error("join: the guard's greeting did not name its track file")
	}
}

// TestCheckURL checks the admin API's URL the guard is told.
func TestCheckURL(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9090}, "http://127.0.0.1:9090"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 9090}, "http://127.0.0.1:9090"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 9090}, "http://127.0.0.1:9090"},
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 80}, "http://10.0.0.2:80"},
		{&net.UnixAddr{Name: "/run/shoal/admin.sock", Net: "unix"}, "unix:/run/shoal/admin.sock"},
	} {
		if got := checkURL(c.addr); got != c.want {
			t.Errorf("checkURL(%v) = %q, want %q", c.addr, got, c.want)
		}
	}
}

// TestVIPGuardHungIsKilled stops a running guard (SIGSTOP: it can say
// nothing, as a hung one) and checks that its owner, hearing nothing for
// the silence allowed, kills it, and that keepalived (here a fake) dies
// with it (Pdeathsig), which is what releases the address to a peer.
func TestVIPGuardHungIsKilled(t *testing.T) {
	k := fakeGuardKeeper(t)
	k.silence = 2 * time.Second
	a, guard, err := k.startGuard()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- guard.Wait() }()
	defer func() {
		guard.Process.Signal(syscall.SIGCONT)
		guard.Process.Kill()
		<-exited
	}()
	ctx := testenv.Context(t, 2*time.Minute)
	followed := make(chan error, 1)
	go func() {
		_, err := k.follow(ctx, a, guard, false)
		followed <- err
	}()
	var pid int
	testenv.Eventually(t, time.Minute, func() error {
		b, err := os.ReadFile(k.paths.pidFile)
		if err != nil {
			return err
		}
		_, err = fmt.Sscan(string(b), &pid)
		return err
	})
	// The guard counts as running once it announced keepalived: wait for
	// its state (the fake reports MASTER) before stopping it.
	testenv.Eventually(t, time.Minute, func() error {
		if s, _ := k.stateNow(); s != "MASTER" {
			return fmt.Errorf("state %q", s)
		}
		return nil
	})
	if err := guard.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-followed:
		if err == nil || !strings.Contains(err.Error(), "hung") {
			t.Fatalf("follow of a stopped guard: %v, want it taken for hung", err)
		}
	case <-ctx.Done():
		t.Fatal("the owner did not give up on a stopped guard")
	}
	select {
	case <-exited:
		exited <- nil
	case <-ctx.Done():
		t.Fatal("the hung guard was not killed")
	}
	testenv.Eventually(t, time.Minute, func() error {
		// Gone, or dead and not yet reaped by its new parent.
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if _, after, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(after, "Z") {
			return nil
		}
		return fmt.Errorf("keepalived (pid %d) after its guard was killed: %q, want it gone", pid, stat)
	})
}

// TestVIPJoinEarlierGuard has openVIP join a guard of an earlier shoal
// (here a stand-in: its greeting names no track file): the new process
// adopts it, and leaves its keepalived's running configuration (a
// vrrp_script of `shoal lb check`, which still works) instead of having
// it reload a keepalived.conf whose track file that guard never writes.
func TestVIPJoinEarlierGuard(t *testing.T) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skipf("openVIP needs keepalived: %v", err)
	}
	dir := t.TempDir()
	paths := vipPathsIn(dir)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: paths.sock, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan []string, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			served <- []string{err.Error()}
			return
		}
		defer c.Close()
		writeMsg(c, "started 42")
		writeMsg(c, "state MASTER")
		// What the owner sends until it leaves.
		var got []string
		buf := make([]byte, vipMsgMax)
		for {
			n, err := c.Read(buf)
			if err != nil || n == 0 {
				break
			}
			got = append(got, string(buf[:n]))
		}
		served <- got
	}()
	var logs strings.Builder
	cfg := config.LBVIP{Address: netip.MustParsePrefix("10.0.0.100/24"), Interface: "lo", Peers: []netip.Addr{netip.MustParseAddr("10.0.0.12")},
		Priority: 100, RouterID: 51, AdvertInterval: 250 * time.Millisecond, Keepalived: "keepalived", Dir: dir}
	k, err := openVIP(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if k.adopted == nil || k.adoptedChecks {
		t.Fatalf("adopted %v, checks %v: want the earlier guard adopted, without the check", k.adopted, k.adoptedChecks)
	}
	if !strings.Contains(logs.String(), "is of an earlier shoal") {
		t.Errorf("no warning about the earlier guard:\n%s", logs.String())
	}
	k.close()
	if got := <-served; len(got) != 0 {
		t.Errorf("the earlier guard was sent %q; want nothing (no reload)", got)
	}
}
