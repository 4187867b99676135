// Package examples_test runs the example apps the way Shoal does: built with
// internal/release, run with internal/runtime, and checked over real sockets.
package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func newLocal(t *testing.T) *runtime.Local {
	t.Helper()
	l, err := runtime.NewLocal(runtime.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		go func() {
			for range l.Exits() {
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l.Close(ctx)
	})
	return l
}

type response struct {
	status int
	body   string
}

func do(t *testing.T, method, url, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, string(b)}
}

func healthy(base string) error {
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

// stopAndExpectClean stops the instance and checks that it exited 0 on its own.
func stopAndExpectClean(t *testing.T, l *runtime.Local, id string) runtime.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	select {
	case x := <-l.Exits():
		if x.ID != id || x.Code != 0 || x.Killed {
			t.Fatalf("exit = %+v, want a clean exit 0", x)
		}
		return x
	case <-time.After(30 * time.Second):
		t.Fatal("no exit reported")
	}
	return runtime.Exit{}
}

func TestMeteorLike(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH")
	}
	dir, err := filepath.Abs("meteor-like")
	if err != nil {
		t.Fatal(err)
	}
	settings, err := os.ReadFile(filepath.Join(dir, "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	l := newLocal(t)
	info, err := l.Start(context.Background(), runtime.Spec{
		ID: "meteor-1", Dir: dir, Command: "node main.js",
		Env: []string{"METEOR_SETTINGS=" + string(settings), "BOOT_DELAY_MS=100", "POLL_TIMEOUT_MS=200"},
	})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + info.Addr
	testenv.Eventually(t, 30*time.Second, func() error { return healthy(base) })

	page := do(t, "GET", base+"/", "")
	for _, want := range []string{"meteor-1", fmt.Sprint(info.PID), "meteor-like demo"} {
		if page.status != 200 || !strings.Contains(page.body, want) {
			t.Fatalf("page (%d) lacks %q:\n%s", page.status, want, page.body)
		}
	}
	if strings.Contains(page.body, "not-a-real-secret") {
		t.Fatal("page shows private settings")
	}
	if r := do(t, "POST", base+"/api/echo", "ping"); !strings.Contains(r.body, `"body":"ping"`) || !strings.Contains(r.body, `"instance":"meteor-1"`) {
		t.Fatalf("echo = %+v", r)
	}

	t.Run("websocket", func(t *testing.T) { testWebSocket(t, base) })
	t.Run("long poll", func(t *testing.T) { testLongPoll(t, base) })
	t.Run("health toggles", func(t *testing.T) {
		do(t, "POST", base+"/admin/unhealthy", "")
		if r := do(t, "GET", base+"/healthz", ""); r.status != 500 {
			t.Fatalf("healthz after toggle = %d", r.status)
		}
		do(t, "POST", base+"/admin/healthy", "")
		flag := filepath.Join(info.WorkDir, "unhealthy")
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if r := do(t, "GET", base+"/healthz", ""); r.status != 500 {
			t.Fatalf("healthz with unhealthy file = %d", r.status)
		}
		os.Remove(flag)
		if err := healthy(base); err != nil {
			t.Fatal(err)
		}
	})

	stopAndExpectClean(t, l, "meteor-1")
	b, err := os.ReadFile(info.LogPath)
	if err != nil || !strings.Contains(string(b), "meteor-1: stopped") {
		t.Fatalf("log lacks the graceful stop (%v):\n%s", err, b)
	}
}

func testWebSocket(t *testing.T, base string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	big := strings.Repeat("x", 70000) // exercises the 64-bit length form
	for _, m := range []struct {
		typ  websocket.MessageType
		data string
	}{{websocket.MessageText, "hello"}, {websocket.MessageBinary, "\x00\x01\x02"}, {websocket.MessageText, big}} {
		if err := c.Write(ctx, m.typ, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != m.typ || string(got) != m.data {
			t.Fatalf("echo of %d bytes: type %v, %d bytes, %v", len(m.data), typ, len(got), err)
		}
	}
	// Ping needs a concurrent reader to receive the pong.
	read := make(chan string, 1)
	go func() {
		_, got, err := c.Read(ctx)
		if err != nil {
			read <- err.Error()
			return
		}
		read <- string(got)
	}()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("after ping")); err != nil {
		t.Fatal(err)
	}
	if got := <-read; got != "after ping" {
		t.Fatalf("read after ping: %q", got)
	}
	if err := c.Close(websocket.StatusCode(4000), "bye"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
}

func testLongPoll(t *testing.T, base string) {
	r := do(t, "POST", base+"/poll/session", "")
	var s struct{ ID string }
	if err := json.Unmarshal([]byte(r.body), &s); r.status != 201 || err != nil || s.ID == "" {
		t.Fatalf("create session: %+v %v", r, err)
	}
	if r := do(t, "GET", base+"/poll/"+s.ID, ""); r.status != 204 {
		t.Fatalf("empty poll = %+v, want 204", r)
	}
	if r := do(t, "POST", base+"/poll/"+s.ID, "m1"); r.status != 202 {
		t.Fatalf("enqueue = %+v", r)
	}
	if r := do(t, "GET", base+"/poll/"+s.ID, ""); r.status != 200 || r.body != "m1" {
		t.Fatalf("poll = %+v, want m1", r)
	}
	if r := do(t, "GET", base+"/poll/no-such-session", ""); r.status != 404 {
		t.Fatalf("unknown session = %+v, want 404", r)
	}
}

func TestGoAppBuildOnceAndRun(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH")
	}
	src := t.TempDir() // build a copy: the build writes bin/ into its folder
	for _, f := range []string{"go.mod", "main.go"} {
		b, err := os.ReadFile(filepath.Join("goapp", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	store, err := release.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log strings.Builder
	spec := release.BuildSpec{Dir: src, Command: "go build -o bin/goapp .", Output: "bin", Log: &log,
		Env: []string{"GOFLAGS=-trimpath", "GOWORK=off"}}
	a, built, err := store.BuildOnce(ctx, spec)
	if err != nil || !built {
		t.Fatalf("build: built=%v err=%v\n%s", built, err, log.String())
	}
	if again, built, err := store.BuildOnce(ctx, spec); err != nil || built || again.Digest != a.Digest {
		t.Fatalf("second BuildOnce: built=%v err=%v", built, err)
	}
	rel := filepath.Join(t.TempDir(), "releases", "goapp")
	if err := store.Unpack(ctx, a.Digest, rel); err != nil {
		t.Fatal(err)
	}
	l := newLocal(t)
	info, err := l.Start(ctx, runtime.Spec{ID: "goapp-1", Dir: rel, Command: "./goapp", Env: []string{"BOOT_DELAY_MS=50"}})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + info.Addr
	testenv.Eventually(t, 30*time.Second, func() error { return healthy(base) })
	if r := do(t, "GET", base+"/", ""); r.status != 200 || !strings.Contains(r.body, "hello from goapp-1") {
		t.Fatalf("GET / = %+v", r)
	}
	stopAndExpectClean(t, l, "goapp-1")
}
