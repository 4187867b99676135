package dockerrt

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		cleanupImages()
		os.Exit(code)
	}))
}

// connect returns a client of the test engine, or skips the test when none
// answers, unless SHOAL_REQUIRE_DOCKER=1 (CI starts dockerd and sets it),
// where that is a failure.
func connect(t *testing.T) *client.Client {
	t.Helper()
	cli, err := Connect(context.Background(), 5*time.Second)
	if errors.Is(err, ErrNoEngine) {
		if os.Getenv("SHOAL_REQUIRE_DOCKER") == "1" {
			t.Fatalf("SHOAL_REQUIRE_DOCKER=1 and %v", err)
		}
		t.Skipf("skipped: %v (start dockerd, or set DOCKER_HOST)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

var (
	imageOnce sync.Once
	imageID   string
	imageErr  error
	imageRefs []string // images the tests built, removed at the end
	imagesMu  sync.Mutex
)

// appContext returns a build context holding the static binary of
// examples/docker and a FROM scratch Dockerfile with extra lines.
func appContext(t *testing.T, extra string) []byte {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "dockerapp")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, "examples", "docker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test app: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, mode int64, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("Dockerfile", 0o644, []byte("FROM scratch\nCOPY dockerapp /dockerapp\nENTRYPOINT [\"/dockerapp\"]\n"+extra))
	add("dockerapp", 0o755, b)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testImage builds the test app's image once per test binary.
func testImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	imageOnce.Do(func() {
		ctx := testenv.Context(t, 2*time.Minute)
		var ref string
		imageID, ref, imageErr = Build(ctx, cli, bytes.NewReader(appContext(t, "")), BuildOptions{App: "dockerrt-test", Dockerfile: "Dockerfile"}, io.Discard)
		if imageErr == nil {
			addRef(ref)
		}
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageID
}

func addRef(ref string) {
	imagesMu.Lock()
	imageRefs = append(imageRefs, ref)
	imagesMu.Unlock()
}

func cleanupImages() {
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if len(imageRefs) == 0 {
		return
	}
	cli, err := Connect(context.Background(), 5*time.Second)
	if err != nil {
		return
	}
	defer cli.Close()
	for _, ref := range imageRefs {
		cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	}
}

// newEngine returns an Engine of a fresh scope, closed at the end of t.
func newEngine(t *testing.T) (*Engine, *client.Client) {
	t.Helper()
	cli := connect(t)
	raw := connect(t) // the test's own view of the engine
	t.Cleanup(func() { raw.Close() })
	scope := fmt.Sprintf("test-%s-%d", t.Name(), time.Now().UnixNano())
	e, err := New(context.Background(), cli, Options{Scope: scope})
	if err != nil {
		cli.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		// Nothing of the scope is left.
		list, err := raw.ContainerList(ctx, container.ListOptions{All: true})
		if err != nil {
			t.Error(err)
			return
		}
		for _, c := range list {
			if c.Labels[LabelScope] == scope {
				t.Errorf("container %s of the scope left after Close", c.ID)
			}
		}
	})
	return e, raw
}

func get(addr, path string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

func waitExit(t *testing.T, e *Engine, id string) Exit {
	t.Helper()
	select {
	case ex := <-e.Exits():
		if ex.ID != id {
			t.Fatalf("exit of %s, want %s", ex.ID, id)
		}
		return ex
	case <-time.After(time.Minute):
		t.Fatalf("no exit of %s", id)
	}
	return Exit{}
}

func TestStartServesWithLabelsLimitsAndNoRestart(t *testing.T) {
	e, raw := newEngine(t)
	img := testImage(t, e.Client())
	ctx := testenv.Context(t, time.Minute)
	info, err := e.Start(ctx, Spec{ID: "web-1", App: "web", Release: 3, Image: img,
		Env: []string{"GREETING=hi"}, StopTimeout: 20 * time.Second, CPU: 0.5, Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.Addr, "127.0.0.1:") || info.PID <= 0 {
		t.Fatalf("info = %+v", info)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		body, err := get(info.Addr, "/")
		if err == nil && !strings.Contains(body, "dockerapp") {
			return fmt.Errorf("body %q", body)
		}
		return err
	})
	in, err := raw.ContainerInspect(ctx, info.Container)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{LabelApp: "web", LabelRelease: "3", LabelInstance: "web-1", LabelScope: e.scope}
	for k, v := range want {
		if in.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, in.Config.Labels[k], v)
		}
	}
	if in.HostConfig.Memory != 64<<20 || in.HostConfig.NanoCPUs != 5e8 {
		t.Errorf("limits memory=%d nano_cpus=%d", in.HostConfig.Memory, in.HostConfig.NanoCPUs)
	}
	if p := in.HostConfig.RestartPolicy.Name; p != "" && p != container.RestartPolicyDisabled {
		t.Errorf("restart policy %q", p)
	}
	var port string
	for _, env := range in.Config.Env {
		if v, ok := strings.CutPrefix(env, "PORT="); ok {
			port = v
		}
	}
	if !strings.HasSuffix(info.Addr, ":"+port) {
		t.Errorf("PORT=%s, published on %s", port, info.Addr)
	}
	if _, err := e.Start(ctx, Spec{ID: "web-1", Image: img}); err == nil {
		t.Error("second start of web-1 succeeded")
	}
	start := time.Now()
	if err := e.Stop(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, e, "web-1")
	// The app exits by itself on SIGTERM (status 0), well before the
	// stop timeout's SIGKILL.
	if !ex.Stopped || ex.Code != 0 || time.Since(start) > 15*time.Second {
		t.Errorf("graceful stop: exit %+v after %s", ex, time.Since(start))
	}
	if err := e.Stop(ctx, "web-1"); err != nil {
		t.Errorf("stop of an exited instance: %v", err)
	}
	if err := e.Stop(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stop of an unknown instance: %v", err)
	}
}

func TestContainerPortAndCmd(t *testing.T) {
	e, _ := newEngine(t)
	img := testImage(t, e.Client())
	ctx := testenv.Context(t, time.Minute)
	// The app listens on 3000 inside (PORT=3000), published on a free port.
	info, err := e.Start(ctx, Spec{ID: "p-1", App: "p", Image: img, ContainerPort: 3000, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error { _, err := get(info.Addr, "/healthz"); return err })
}

func TestStopKillsAfterStopTimeout(t *testing.T) {
	e, _ := newEngine(t)
	img := testImage(t, e.Client())
	ctx := testenv.Context(t, time.Minute)
	info, err := e.Start(ctx, Spec{ID: "stubborn", App: "s", Image: img, Env: []string{"IGNORE_TERM=1"},
		StopSignal: syscall.SIGTERM, StopTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error { _, err := get(info.Addr, "/healthz"); return err })
	start := time.Now()
	if err := e.Stop(ctx, "stubborn"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	ex := waitExit(t, e, "stubborn")
	if took < 1500*time.Millisecond || took > 15*time.Second {
		t.Errorf("stop took %s, want the stop timeout (1.5s) then the kill", took)
	}
	if ex.Signal != "SIGKILL" || ex.Code != -1 || !ex.Stopped {
		t.Errorf("exit %+v, want killed by SIGKILL after a stop", ex)
	}
}

func TestCrashIsReportedAndLogsAndStats(t *testing.T) {
	e, raw := newEngine(t)
	img := testImage(t, e.Client())
	ctx := testenv.Context(t, time.Minute)
	info, err := e.Start(ctx, Spec{ID: "c-1", App: "c", Image: img, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error { _, err := get(info.Addr, "/healthz"); return err })
	s, err := e.Stats(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes <= 0 || s.CPUSeconds <= 0 {
		t.Errorf("stats %+v", s)
	}
	var logs bytes.Buffer
	if err := e.Logs(ctx, "c-1", 10, false, &logs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "listening on") {
		t.Errorf("logs %q", logs.String())
	}
	if err := raw.ContainerKill(ctx, info.Container, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, e, "c-1")
	if ex.Stopped || ex.Signal != "SIGKILL" {
		t.Errorf("exit %+v, want an unrequested SIGKILL", ex)
	}
	// The logs of an exited instance are still there.
	logs.Reset()
	if err := e.Logs(ctx, "c-1", 0, true, &logs); err != nil || !strings.Contains(logs.String(), "listening on") {
		t.Errorf("logs after the exit: %v %q", err, logs.String())
	}
	if err := e.Logs(ctx, "nope", 0, false, io.Discard); !errors.Is(err, ErrNotFound) {
		t.Errorf("logs of an unknown instance: %v", err)
	}
}

func TestNewRemovesLeftoversOfItsScopeOnly(t *testing.T) {
	e, raw := newEngine(t)
	img := testImage(t, e.Client())
	ctx := testenv.Context(t, time.Minute)
	mine, err := e.Start(ctx, Spec{ID: "left-1", App: "l", Image: img, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newEngine(t)
	theirs, err := other.Start(ctx, Spec{ID: "other-1", App: "o", Image: img, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A new Engine of e's scope (as after a SIGKILL of the process that
	// owned e) removes e's container and leaves the other scope's alone.
	again, err := New(ctx, connect(t), Options{Scope: e.scope})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ContainerInspect(ctx, mine.Container); !client.IsErrNotFound(err) {
		t.Errorf("leftover container still there: %v", err)
	}
	if in, err := raw.ContainerInspect(ctx, theirs.Container); err != nil || !in.State.Running {
		t.Errorf("the other scope's container: %v", err)
	}
	if err := again.Close(ctx); err != nil {
		t.Error(err)
	}
	ex := waitExit(t, e, "left-1")
	if ex.Stopped {
		t.Errorf("exit %+v", ex)
	}
}

func TestSaveImageIDAndLoad(t *testing.T) {
	cli := connect(t)
	defer cli.Close()
	ctx := testenv.Context(t, 2*time.Minute)
	id, ref, err := Build(ctx, cli, bytes.NewReader(appContext(t, "LABEL test.roundtrip=\""+t.Name()+fmt.Sprint(time.Now().UnixNano())+"\"\n")),
		BuildOptions{App: "dockerrt-load", Dockerfile: "Dockerfile"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	addRef(ref)
	rc, err := Save(ctx, cli, ref)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ImageID(bytes.NewReader(saved))
	if err != nil || got != id {
		t.Fatalf("ImageID = %q, %v; want %q", got, err, id)
	}
	if _, err := cli.ImageRemove(ctx, id, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		t.Fatal(err)
	}
	e, err := New(ctx, connect(t), Options{Scope: "load-" + t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	if has, err := e.HasImage(ctx, id); err != nil || has {
		t.Fatalf("HasImage after remove = %v, %v", has, err)
	}
	if err := e.Load(ctx, bytes.NewReader(saved), id); err != nil {
		t.Fatal(err)
	}
	if has, err := e.HasImage(ctx, id); err != nil || !has {
		t.Fatalf("HasImage after load = %v, %v", has, err)
	}
	// A failed build names the engine's reason.
	_, _, err = Build(ctx, cli, bytes.NewReader(appContext(t, "RUN /nonexistent\n")), BuildOptions{App: "dockerrt-fail", Dockerfile: "Dockerfile"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "docker build:") {
		t.Errorf("failed build: %v", err)
	}
}

func TestImageIDRejectsNonImages(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte(`[{"Config":"../etc/passwd"}]`)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.Close()
	if _, err := ImageID(&buf); err == nil {
		t.Error("a manifest with a config that is no digest was accepted")
	}
	if _, err := ImageID(strings.NewReader("")); err == nil {
		t.Error("an empty stream was accepted")
	}
}
