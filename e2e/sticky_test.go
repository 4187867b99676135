package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// The stickiness test runs real long-polling clients (socket.io-client
// and sockjs-client in Node) through shoal lb to three Node backends. Long
// polling spreads one session over many HTTP requests, so it only works
// when every request of a session reaches the backend that holds it.

var npmInstall struct {
	once sync.Once
	err  error
}

// stickyDir returns e2e/sticky with its node_modules installed, or skips
// the test when node or npm is missing.
func stickyDir(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	dir, err := filepath.Abs("sticky")
	if err != nil {
		t.Fatal(err)
	}
	npmInstall.once.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io")); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			npmInstall.err = fmt.Errorf("npm install in %s: %v\n%s", dir, err, out)
		}
	})
	if npmInstall.err != nil {
		t.Fatal(npmInstall.err)
	}
	return dir
}

// nodeBackends starts n "node server.js" backends and returns their
// host:port addresses.
func nodeBackends(t *testing.T, ctx context.Context, dir string, n int) []string {
	t.Helper()
	var addrs []string
	for i := range n {
		name := string(rune('a' + i))
		cmd := exec.Command("node", "server.js", name)
		cmd.Dir = dir
		// The backend exits when its stdin closes, so it cannot outlive
		// this test even if the test binary is killed.
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := testenv.StartCmd(t, cmd)
		t.Cleanup(func() { stdin.Close() })
		m, err := p.WaitForLine(ctx, regexp.MustCompile(`listening name=`+name+` addr=(\S+)`))
		if err != nil {
			t.Fatalf("node backend %s: %v", name, err)
		}
		addrs = append(addrs, m[1])
	}
	return addrs
}

type clientResult struct {
	OK       bool     `json:"ok"`
	Error    string   `json:"error"`
	Backends []string `json:"backends"`
	// printedNothing: the client printed no result (Error says why).
	printedNothing bool
}

// pollingClient runs client.js of the given kind against base.
func pollingClient(t *testing.T, ctx context.Context, dir, kind, base string, messages int) clientResult {
	t.Helper()
	r := runPollingCmd(newPollingCmd(ctx, dir, kind, base, messages, 0), kind)
	if r.printedNothing {
		t.Fatal(r.Error)
	}
	return r
}

// newPollingCmd is client.js of the given kind against base; holdMs keeps
// the session open that long after the messages.
func newPollingCmd(ctx context.Context, dir, kind, base string, messages, holdMs int) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "node", "client.js", kind, base, fmt.Sprint(messages), fmt.Sprint(holdMs))
	cmd.Dir = dir
	return cmd
}

// runPollingCmd runs a client.js command and reads its result; a client
// that printed none gives a failed result with printedNothing set. Safe
// on any goroutine.
func runPollingCmd(cmd *exec.Cmd, kind string) clientResult {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, _ := cmd.Output() // exit 1 is a result, read from stdout
	var r clientResult
	if err := json.Unmarshal(out, &r); err != nil {
		return clientResult{Error: fmt.Sprintf("%s client printed no result: %v\nstdout: %s\nstderr: %s", kind, err, out, stderr.String()), printedNothing: true}
	}
	return r
}

func TestStickyLongPollingClients(t *testing.T) {
	ctx := testenv.Context(t, 3*time.Minute)
	dir := stickyDir(t)
	backends := nodeBackends(t, ctx, dir, 3)

	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "sticky.key"), []byte("e2e-sticky-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sticky := "    sticky:\n      cookie: shoal_sticky\n      secret_file: sticky.key\n      sockjs_prefixes: [/sockjs]\n"
	p := startLB(t, ctx, tmp, lbConfig(tmp, backends, sticky))

	const messages = 20
	for _, kind := range []string{"socketio", "sockjs"} {
		r := pollingClient(t, ctx, dir, kind, p.web, messages)
		if !r.OK {
			t.Fatalf("sticky on: %s client failed: %s", kind, r.Error)
		}
		if len(r.Backends) != 1 {
			t.Fatalf("sticky on: %s session spread over backends %v", kind, r.Backends)
		}
		t.Logf("sticky on: %s: %d messages, all on backend %s", kind, messages, r.Backends[0])
	}

	// The same balancer without stickiness: the sessions break.
	mark := p.Mark()
	if err := os.WriteFile(p.cfg, []byte(lbConfig(tmp, backends, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg=reloaded`)); err != nil {
		t.Fatal(err)
	}
	r := pollingClient(t, ctx, dir, "socketio", p.web, messages)
	if r.OK || !strings.Contains(r.Error, "Session ID unknown") {
		t.Fatalf("sticky off: socket.io should fail with Session ID unknown, got %+v", r)
	}
	t.Logf("sticky off: socketio: %s", r.Error)
	r = pollingClient(t, ctx, dir, "sockjs", p.web, messages)
	if r.OK {
		t.Fatalf("sticky off: sockjs session survived round robin over 3 backends: %+v", r)
	}
	t.Logf("sticky off: sockjs: %s", r.Error)
}
