package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// wsBackend answers GETs with its name and echoes WebSocket messages on
// /ws.
func wsBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			fmt.Fprintf(w, "backend %s\n", name)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		s.CloseClientConnections()
		s.Close()
	})
	return s
}

// handoffLoad sends GETs to url from four clients, two over keep-alive
// connections and two on a new connection each, until it is stopped;
// over TLS with tc (nil: plain HTTP) the third speaks HTTP/2.
func handoffLoad(ctx context.Context, url string, tc *tls.Config) *testenv.Load {
	return testenv.StartLoad(ctx, url, testenv.LoadOptions{
		Workers: 4,
		Client: func(i int) *http.Client {
			tr := &http.Transport{DisableKeepAlives: i%2 == 1, MaxIdleConnsPerHost: 4, ForceAttemptHTTP2: tc != nil && i == 2}
			if tc != nil {
				tr.TLSClientConfig = tc.Clone() // the transport sets its NextProtos
			}
			return &http.Client{Transport: tr, Timeout: 10 * time.Second}
		},
	})
}

// handoffConfig is lbConfig with a short drain and the backend's
// WebSocket route; extra is appended to the listeners.
func handoffConfig(dir, target, extraListener string) string {
	src := lbConfig(dir, []string{target}, "")
	src = strings.Replace(src, "routes:\n", extraListener+"routes:\n", 1)
	return src + "limits:\n  shutdown_timeout: 3s\n"
}

// TestLBHandoffUnderLoad: a second shoal lb on the same lb.yaml takes
// over the listening sockets of the first under constant load with no
// failed request; the first keeps its WebSocket until the drain deadline,
// closes it with 1001 and exits 0.
func TestLBHandoffUnderLoad(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	be := wsBackend(t, "a")
	p1 := startLB(t, ctx, dir, handoffConfig(dir, serverAddr(be), ""))

	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p1.web, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	echo := func(msg string) error {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := ws.Read(ctx)
		if err == nil && string(got) != msg {
			err = fmt.Errorf("echo %q, want %q", got, msg)
		}
		return err
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}

	load := handoffLoad(ctx, p1.web+"/", nil)
	defer load.Stop()
	if err := load.WaitOK(ctx, 300); err != nil {
		t.Fatal(err)
	}

	p2 := testenv.Start(t, p1.bin, "lb", "-c", p1.cfg)
	m, err := p2.WaitForLine(ctx, regexp.MustCompile(`msg=listening listener=web addr=(\S+)`))
	if err != nil {
		t.Fatal(err)
	}
	if "http://"+m[1] != p1.web {
		t.Fatalf("new process listens on %s, the old on %s", m[1], p1.web)
	}
	if _, err := p2.WaitForLine(ctx, regexp.MustCompile(`msg="took over" old_pid=\d+`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.WaitForLine(ctx, regexp.MustCompile(`msg="handed over; draining"`)); err != nil {
		t.Fatal(err)
	}
	handed := time.Now()

	// The old process keeps the WebSocket while it drains.
	if err := echo("draining"); err != nil {
		t.Fatalf("WebSocket on the draining process: %v", err)
	}
	// Until the drain deadline (3 s), then a 1001 close.
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("WebSocket end: %v, want close 1001", err)
	}
	if d := time.Since(handed); d < 2*time.Second {
		t.Fatalf("WebSocket closed %v after the handoff, before the 3 s drain deadline", d)
	}
	if code, err := p1.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("old process exit: %d %v", code, err)
	}
	if _, err := p1.WaitForLine(ctx, regexp.MustCompile(`msg=stopped`)); err != nil {
		t.Fatal(err)
	}

	// The new process serves alone, with the old one gone.
	if err := load.WaitOK(ctx, 300); err != nil {
		t.Fatal(err)
	}
	load.Stop()
	load.Check(t, "load")
	ws2, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p1.web, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("WebSocket through the new process: %v", err)
	}
	ws2.CloseNow()
	if code, _, err := httpGet(ctx, p1.admin+"/v1/lb/status"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("admin API through the new process: %d %v", code, err)
	}
	stopClean(t, ctx, p2, "new process")
}

// TestLBHandoffFailuresKeepOldServing: under load, a new process with an
// invalid lb.yaml, one that cannot bind a new listener, and a client that
// takes the offer and dies all leave the old process serving with no
// failed request; a later takeover still works.
func TestLBHandoffFailuresKeepOldServing(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	be := wsBackend(t, "a")
	p1 := startLB(t, ctx, dir, handoffConfig(dir, serverAddr(be), ""))
	load := handoffLoad(ctx, p1.web+"/", nil)
	defer load.Stop()
	if err := load.WaitOK(ctx, 200); err != nil {
		t.Fatal(err)
	}

	// An invalid lb.yaml: refused before the old process is asked.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(handoffConfig(dir, serverAddr(be), ""), "pool: app", "pool: nope", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runShoalCmd(t, ctx, p1.bin, "lb", "-c", bad)
	if code == 0 || !strings.Contains(errOut, "unknown pool") {
		t.Fatalf("invalid lb.yaml: exit %d, stderr %s", code, errOut)
	}

	// A new listener on a port in use: the new process got the sockets,
	// fails to bind and exits; the old one serves on.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	clash := filepath.Join(dir, "clash.yaml")
	extra := fmt.Sprintf("  - name: other\n    listen: %s\n", busy.Addr())
	if err := os.WriteFile(clash, []byte(handoffConfig(dir, serverAddr(be), extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	mark := p1.Mark()
	code, _, errOut = runShoalCmd(t, ctx, p1.bin, "lb", "-c", clash)
	if code == 0 || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("listener on a busy port: exit %d, stderr %s", code, errOut)
	}
	if _, _, err := p1.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg="handoff abandoned by the new process; serving on"`)); err != nil {
		t.Fatal(err)
	}
	if err := load.WaitOK(ctx, 200); err != nil {
		t.Fatal(err)
	}

	// A new process that dies holding the sockets before it asked the
	// old one to stop (played by the test: it reads the offer, keeps the
	// descriptors a moment and drops the connection, which is what the
	// kernel does for a killed process).
	mark = p1.Mark()
	takeOfferAndDie(t, ctx, filepath.Join(dir, ".shoal", "handoff.sock"), p1.web)
	if _, _, err := p1.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg="handoff abandoned by the new process; serving on"`)); err != nil {
		t.Fatal(err)
	}
	if err := load.WaitOK(ctx, 200); err != nil {
		t.Fatal(err)
	}
	if p1.Exited() {
		t.Fatal("the old process exited")
	}

	// The handoff socket still works: a valid takeover succeeds.
	p2 := takeOver(t, ctx, p1)
	if err := load.WaitOK(ctx, 200); err != nil {
		t.Fatal(err)
	}
	load.Stop()
	load.Check(t, "load")
	stopClean(t, ctx, p2, "new process")
}

// takeOfferAndDie reads the old process's offer on the handoff socket,
// checks that it carries a listening socket of web, then closes it all.
func takeOfferAndDie(t *testing.T, ctx context.Context, sock, web string) {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*16))
	n, oobn, _, _, err := c.(*net.UnixConn).ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("offer's control messages: %d, %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "offered")
		if ln, err := net.FileListener(f); err == nil {
			if "http://"+ln.Addr().String() == web {
				found = true
			}
			ln.Close()
		}
		f.Close()
	}
	if !found || !strings.Contains(string(buf[:n]), `"name":"web"`) {
		t.Fatalf("offer %s carries no socket of %s", buf[:n], web)
	}
}

// TestLBUpgradeOnSIGUSR2: SIGUSR2 makes shoal lb start its binary again,
// which takes over under load with no failed request and tells systemd
// (NOTIFY_SOCKET) that it is the main process; the old one exits 0.
func TestLBUpgradeOnSIGUSR2(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	readNotify := func() string {
		notify.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 4096)
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}

	be := wsBackend(t, "a")
	cfg := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(cfg, []byte(handoffConfig(dir, serverAddr(be), "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.BuildShoal(t), "lb", "-c", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	p1 := testenv.StartCmd(t, cmd)
	m, err := p1.WaitForLine(ctx, regexp.MustCompile(`msg=listening listener=web addr=(\S+)`))
	if err != nil {
		t.Fatal(err)
	}
	web := "http://" + m[1]
	if got := readNotify(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}

	load := handoffLoad(ctx, web+"/", nil)
	defer load.Stop()
	if err := load.WaitOK(ctx, 300); err != nil {
		t.Fatal(err)
	}
	if err := p1.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	// The new process writes to the old one's output.
	m, err = p1.WaitForLine(ctx, regexp.MustCompile(fmt.Sprintf(`msg="took over" old_pid=%d pid=(\d+)`, p1.Cmd.Process.Pid)))
	if err != nil {
		t.Fatal(err)
	}
	newPID, _ := strconv.Atoi(m[1])
	if got, want := readNotify(), fmt.Sprintf("MAINPID=%d\nREADY=1", newPID); got != want {
		t.Fatalf("notification %q, want %q", got, want)
	}
	// p1.Wait would also wait for its output, which the new process
	// still writes to.
	if err := testenv.WaitFor(ctx, func() error {
		if !p1.Exited() {
			return errors.New("the old process runs")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code := p1.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("old process exit: %d", code)
	}
	if err := load.WaitOK(ctx, 300); err != nil {
		t.Fatal(err)
	}
	load.Stop()
	load.Check(t, "load")

	mark := p1.Mark()
	if err := syscall.Kill(newPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p1.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg=stopped`)); err != nil {
		t.Fatal(err)
	}
	// The output ends once the new process exited.
	if _, err := p1.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLBSystemdUnitVerifies: the example unit of shoal lb passes
// systemd-analyze verify with nothing on stderr (the binary's path is
// the only change: /usr/local/bin/shoal does not exist here).
func TestLBSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	src, err := os.ReadFile(filepath.Join("..", "examples", "lb", "shoal-lb.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(src), "/usr/local/bin/shoal", testenv.BuildShoal(t))
	if strings.Count(string(src), "/usr/local/bin/shoal") < 2 {
		t.Fatalf("the unit does not start /usr/local/bin/shoal:\n%s", src)
	}
	path := filepath.Join(t.TempDir(), "shoal-lb.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, time.Minute)
	cmd := exec.CommandContext(ctx, analyze, "verify", path)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
}

// TestLBHandoffUnderLoadTLS: the takeover of a TLS listener under load
// from new connections (a handshake each), keep-alive HTTP/1.1 and
// HTTP/2 clients fails no request.
func TestLBHandoffUnderLoadTLS(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dir := t.TempDir()
	be := wsBackend(t, "a")
	certFile, keyFile, leaf := testenv.WriteSelfSigned(t, dir, "lb.test")
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	src := strings.Replace(handoffConfig(dir, serverAddr(be), ""), "    listen: 127.0.0.1:0\n",
		fmt.Sprintf("    listen: 127.0.0.1:0\n    tls:\n      - cert: %s\n        key: %s\n", certFile, keyFile), 1)
	p1 := startLB(t, ctx, dir, src)
	url := strings.Replace(p1.web, "http://", "https://", 1) + "/"
	load := handoffLoad(ctx, url, &tls.Config{RootCAs: roots, ServerName: "lb.test"})
	defer load.Stop()
	if err := load.WaitOK(ctx, 300); err != nil {
		t.Fatal(err)
	}
	p2 := takeOver(t, ctx, p1)
	if err := load.WaitOK(ctx, 300); err != nil {
		t.Fatal(err)
	}
	load.Stop()
	load.Check(t, "load")
	stopClean(t, ctx, p2, "new process")
}

// takeOver starts a second shoal lb on old's lb.yaml, waits until it has
// taken over and until old has exited 0, and returns it.
func takeOver(t *testing.T, ctx context.Context, old *lbProc) *testenv.Process {
	t.Helper()
	p := testenv.Start(t, old.bin, "lb", "-c", old.cfg)
	if _, err := p.WaitForLine(ctx, regexp.MustCompile(`msg="took over"`)); err != nil {
		t.Fatal(err)
	}
	if code, err := old.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("old process exit: %d %v", code, err)
	}
	return p
}

// stopClean sends p SIGTERM and requires exit status 0.
func stopClean(t *testing.T, ctx context.Context, p *testenv.Process, what string) {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("%s exit: %d %v", what, code, err)
	}
}
