package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// listeningTCP counts the listening TCP sockets (IPv4 and IPv6) that
// process pid holds, from /proc.
func listeningTCP(t *testing.T, pid int) int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && err == nil {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && fields[3] == "0A" && inodes[fields[9]] {
				n++
			}
		}
		f.Close()
	}
	return n
}

// TestLBAdminUnixSocket: with no admin section, shoal lb opens no TCP
// admin listener (it used to bind 127.0.0.1:9090 and fail when that was
// taken); the admin API is on a 0600 Unix socket in the data directory,
// and the lb verbs find it through -c lb.yaml, undrain included.
func TestLBAdminUnixSocket(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir, err := os.MkdirTemp("", "lbsock") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a, b := httpBackend(t, "a"), httpBackend(t, "b")
	src := "listeners:\n  - name: web\n    listen: 127.0.0.1:0\nroutes:\n  - name: all\n    pool: app\npools:\n  - name: app\n    targets:\n" +
		"      - addr: " + serverAddr(a) + "\n      - addr: " + serverAddr(b) + "\n"
	cfg := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := testenv.BuildShoal(t)
	p := testenv.Start(t, bin, "lb", "-c", cfg)
	web, err := p.WaitForLine(ctx, regexp.MustCompile(`msg=listening listener=web addr=(\S+)`))
	if err != nil {
		t.Fatalf("shoal lb did not start: %v", err)
	}
	m, err := p.WaitForLine(ctx, regexp.MustCompile(`msg=listening listener=admin (\S+)=(\S+)`))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, ".shoal", "admin.sock")
	if m[1] != "socket" || m[2] != sock {
		t.Fatalf("admin listener %s=%s, want socket=%s", m[1], m[2], sock)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %v %v, want a socket with mode 0600", fi, err)
	}
	if n := listeningTCP(t, p.Cmd.Process.Pid); n != 1 {
		t.Fatalf("shoal lb listens on %d TCP sockets, want 1 (web only)", n)
	}

	run := func(args ...string) string {
		t.Helper()
		args = append([]string{"lb", args[0], "-c", cfg}, args[1:]...)
		code, out, errOut := runShoalCmd(t, ctx, bin, args...)
		if code != 0 {
			t.Fatalf("shoal %v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	if out := run("status"); !strings.Contains(out, serverAddr(a)) || !strings.Contains(out, serverAddr(b)) {
		t.Fatalf("status:\n%s", out)
	}
	run("drain", "-wait", "app", serverAddr(a))
	if got := countAnswers(t, ctx, "http://"+web[1]+"/", 4); got["backend b"] != 4 {
		t.Fatalf("after drain: %v", got)
	}
	if out := run("undrain", "app", serverAddr(a)); !strings.Contains(out, "is back in pool app") {
		t.Fatalf("undrain: %q", out)
	}
	if out := run("status"); !regexp.MustCompile(regexp.QuoteMeta(serverAddr(a)) + `\s+healthy`).MatchString(out) {
		t.Fatalf("status after undrain:\n%s", out)
	}
	if got := countAnswers(t, ctx, "http://"+web[1]+"/", 4); got["backend a"] != 2 || got["backend b"] != 2 {
		t.Fatalf("after undrain: %v", got)
	}

	p.Signal(syscall.SIGTERM)
	if code, err := p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit after SIGTERM: %d %v", code, err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("admin socket left behind: %v", err)
	}
}

// TestLBAccessLogReopenedOnHangup: after the access log is moved away
// (logrotate, create mode), SIGHUP makes the next request land in a new
// file at the configured path.
func TestLBAccessLogReopenedOnHangup(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	a := httpBackend(t, "a")
	p := startLB(t, ctx, dir, lbConfig(dir, []string{serverAddr(a)}, "")+"access_log: access.log\n")
	logPath, rotated := filepath.Join(dir, "access.log"), filepath.Join(dir, "access.log.1")
	lines := func(path string) (int, error) {
		b, err := os.ReadFile(path)
		return strings.Count(string(b), "\n"), err
	}
	waitLines := func(path string, n int) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		err := testenv.WaitFor(wctx, func() error {
			if got, err := lines(path); err != nil || got != n {
				return fmt.Errorf("%s: %d lines, want %d (%v)", path, got, n, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	countAnswers(t, ctx, p.web+"/first", 1)
	waitLines(logPath, 1)
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	mark := p.Mark()
	p.Signal(syscall.SIGHUP)
	if _, _, err := p.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg=reloaded`)); err != nil {
		t.Fatal(err)
	}
	countAnswers(t, ctx, p.web+"/second", 1)
	waitLines(logPath, 1)
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), `"path":"/second"`) {
		t.Fatalf("new access log: %s", b)
	}
	if n, err := lines(rotated); err != nil || n != 1 {
		t.Fatalf("rotated access log has %d lines (%v), want 1", n, err)
	}
	p.Signal(syscall.SIGTERM)
	if code, err := p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit after SIGTERM: %d %v", code, err)
	}
}
