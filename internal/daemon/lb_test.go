package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines to write
// while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeLBFile writes an lb.yaml in dir with one listener on addr, one
// pool of target and the admin API on a Unix socket in dir, and loads it.
func writeLBFile(t *testing.T, dir, addr, target string) (string, *config.LBFile) {
	t.Helper()
	src := fmt.Sprintf("listeners:\n  - name: web\n    addr: %s\nroutes:\n  - name: all\n    pool: app\npools:\n  - name: app\n    targets:\n      - addr: %s\nadmin:\n  socket: %s\n  token_file: %s\n",
		addr, target, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "admin.token"))
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := config.LoadLB(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, file
}

func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestLBServesReloadsAndStops: OpenLB binds (Addr reports the real port of
// ":0"), Run proxies and serves the admin API on its socket, and ends with
// nil once its context ends, with every socket closed.
func TestLBServesReloadsAndStops(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend a") }))
	defer backend.Close()
	dir := t.TempDir()
	path, file := writeLBFile(t, dir, "127.0.0.1:0", strings.TrimPrefix(backend.URL, "http://"))
	var logs syncBuffer
	d, err := OpenLB(LBOptions{Path: path, File: file, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	web := d.Addr("web").String()
	if !strings.Contains(logs.String(), "msg=listening listener=web addr="+web) {
		t.Errorf("no listening line for %s:\n%s", web, logs.String())
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()

	if code, body, err := get(ctx, "http://"+web+"/"); err != nil || code != 200 || body != "backend a" {
		t.Fatalf("through the balancer: %d %q %v", code, body, err)
	}
	if err := d.Reload(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if c, err := net.Dial("unix", d.AdminAddr().String()); err != nil {
		t.Fatalf("admin socket: %v", err)
	} else {
		c.Close()
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if c, err := net.Dial("tcp", web); err == nil {
		c.Close()
		t.Errorf("balancer listener %s still open after Run", web)
	}
	if c, err := net.Dial("unix", d.AdminAddr().String()); err == nil {
		c.Close()
		t.Errorf("admin socket still open after Run")
	}
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Errorf("no stopped line:\n%s", logs.String())
	}
	if err := d.Run(ctx); err == nil {
		t.Error("a second Run succeeded")
	}
}

// TestOpenLBReturnsBindErrorAndReleases: a port in use fails OpenLB at
// once, and the admin socket it bound first is closed again.
func TestOpenLBReturnsBindErrorAndReleases(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	path, file := writeLBFile(t, dir, busy.Addr().String(), "127.0.0.1:1")
	d, err := OpenLB(LBOptions{Path: path, File: file})
	if err == nil {
		d.Close()
		t.Fatal("OpenLB on a port in use succeeded")
	}
	if !strings.Contains(err.Error(), "listen") || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("error %q does not name the listen and the address", err)
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		t.Errorf("a bind error is a *ConfigError: %v", err)
	}
	if c, err := net.Dial("unix", filepath.Join(dir, "admin.sock")); err == nil {
		c.Close()
		t.Error("admin socket left open after a failed OpenLB")
	}
}

// TestLBCloseWithoutRun releases the sockets of an LB that never ran.
func TestLBCloseWithoutRun(t *testing.T) {
	dir := t.TempDir()
	path, file := writeLBFile(t, dir, "127.0.0.1:0", "127.0.0.1:1")
	d, err := OpenLB(LBOptions{Path: path, File: file})
	if err != nil {
		t.Fatal(err)
	}
	web := d.Addr("web").String()
	d.Close()
	if c, err := net.Dial("tcp", web); err == nil {
		c.Close()
		t.Errorf("balancer listener %s open after Close", web)
	}
	if c, err := net.Dial("unix", d.AdminAddr().String()); err == nil {
		c.Close()
		t.Error("admin socket open after Close")
	}
}

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	log, err := NewLogger(&b, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "app", "web")
	if got := b.String(); !strings.HasPrefix(got, "{") || !strings.Contains(got, `"msg":"shown","app":"web"`) || strings.Contains(got, "hidden") {
		t.Errorf("json warn logger wrote %q", got)
	}
	for _, c := range [][2]string{{"xml", "info"}, {"text", "loud"}} {
		if _, err := NewLogger(&b, c[0], c[1]); err == nil {
			t.Errorf("NewLogger(%q, %q) succeeded", c[0], c[1])
		}
	}
}
