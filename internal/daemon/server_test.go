package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// testServer is a `shoal server` run by a test on 127.0.0.1.
type testServer struct {
	s      *Server
	ready  ServerReady
	cancel context.CancelFunc
	done   chan error
	token  string
}

// serverConfig is a server.yaml on ephemeral ports of 127.0.0.1 (the
// fleet listener on fleetListen), with short heartbeats.
func serverConfig(t *testing.T, dir, fleetListen string) *config.ServerFile {
	t.Helper()
	text := fmt.Sprintf(`data_dir: data
admin: {listen: "127.0.0.1:0"}
fleet: {listen: %q, heartbeat: 100ms, lost_after: 1500ms}
balancer: {listen: "127.0.0.1:0", drain_timeout: 1s}
`, fleetListen)
	cfg, err := config.ParseServer(filepath.Join(dir, "server.yaml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startServer opens and runs a server until the test ends (or stop).
func startServer(t *testing.T, cfg *config.ServerFile) *testServer {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	s, err := OpenServer(ctx, ServerOptions{Config: cfg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{s: s, done: make(chan error, 1)}
	readyC := make(chan ServerReady, 1)
	s.opts.OnReady = func(r ServerReady) { readyC <- r }
	runCtx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- s.Run(runCtx) }()
	t.Cleanup(ts.stop)
	select {
	case ts.ready = <-readyC:
	case err := <-ts.done:
		t.Fatalf("server ended before it was ready: %v", err)
	case <-ctx.Done():
		t.Fatal("server not ready")
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	ts.token = strings.TrimSpace(string(b))
	return ts
}

// stop ends Run and waits for it; safe to call twice.
func (ts *testServer) stop() {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	if err := <-ts.done; err != nil {
		panic(fmt.Sprintf("server run: %v", err))
	}
}

// client is an admin client of the server for app ("" for none).
func (ts *testServer) client(t *testing.T, app string) *client.Client {
	t.Helper()
	c := client.New(ts.ready.AdminURL, ts.token)
	c.App = app
	t.Cleanup(c.HTTP.CloseIdleConnections)
	return c
}

// agentSet holds the test's agents; stop ends them. A test registers
// its Cleanup before it starts the server, so that the server stops
// first, while its agents still answer.
type agentSet struct{ stops []func() }

func (as *agentSet) stop() {
	for i := len(as.stops) - 1; i >= 0; i-- {
		as.stops[i]()
	}
}

// startAgent joins an in-process `shoal agent` called name to the server
// with a token from its admin API and runs it until as stops; the
// instances it leaves running are killed then.
func (as *agentSet) startAgent(t *testing.T, ts *testServer, name string) {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	tok, err := ts.client(t, "").JoinToken(ctx, api.RoleAgent, "10m")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("server: %s\njoin_token_file: token\nname: %s\nlisten: 127.0.0.1:0\nadvertise: 127.0.0.1\ndata_dir: data\n", ts.ready.FleetURL, name)
	cfg, err := config.ParseAgent(filepath.Join(dir, "agent.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	as.stops = append(as.stops, func() { killRecorded(filepath.Join(cfg.DataDir, "runtime", "pids")) })
	a, err := OpenAgent(ctx, cfg, testLogger(t).With("agent", name))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	as.stops = append(as.stops, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", name, err)
		}
	})
}

// killRecorded kills, with SIGKILL, the process group and the shim of
// every pid record of a detached runtime in dir: they outlive the agent.
func killRecorded(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var rec struct {
			PGID int `json:"pgid"`
			Shim *struct {
				PID int `json:"pid"`
			} `json:"shim"`
		}
		if json.Unmarshal(b, &rec) != nil {
			continue
		}
		if rec.PGID > 1 {
			syscall.Kill(-rec.PGID, syscall.SIGKILL)
		}
		if rec.Shim != nil && rec.Shim.PID > 1 {
			syscall.Kill(rec.Shim.PID, syscall.SIGKILL)
		}
	}
}

// appYAML is the shoal.yaml of a test app: this test binary serving its
// artifact's version.txt, one instance, on hosts (none: the catch-all).
func appYAML(t *testing.T, name string, hosts ...string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := ""
	if len(hosts) > 0 {
		h = fmt.Sprintf("  hosts: [%s]\n", strings.Join(hosts, ", "))
	}
	return fmt.Sprintf(`app: %s
run:
  command: %s
  env:
    %s: "1"
  stop_timeout: 2s
health: {path: /, interval: 200ms, timeout: 200ms, grace: 20s}
group: {min: 0, max: 2, desired: 1}
balancer:
  drain_timeout: 1s
%s`, name, exe, agenttest.ServeEnv, h)
}

// deployApp uploads an artifact whose version.txt is version and deploys
// the app of text through the admin client, as shoal deploy does.
func deployApp(t *testing.T, ctx context.Context, c *client.Client, text, version string) (*client.DeployResult, error) {
	t.Helper()
	digest, gz := agenttest.Artifact(t, map[string]string{"version.txt": version + "\n"})
	if held, err := c.HasArtifact(ctx, digest); err != nil || held {
		t.Fatalf("artifact held before its upload: %v, %v", held, err)
	}
	if err := c.UploadArtifact(ctx, digest, bytes.NewReader(gz), int64(len(gz))); err != nil {
		t.Fatal(err)
	}
	return c.Deploy(ctx, client.DeployOptions{Config: text, ConfigFile: "/home/dev/" + c.App + "/shoal.yaml",
		Env: []api.EnvVar{{Name: agenttest.ServeEnv, Value: "1"}}, Digest: digest}, nil)
}

// getVersion asks the balancer at addr for host's app and returns the
// version its instance answers with.
func getVersion(ctx context.Context, addr, host string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d %s", host, resp.StatusCode, b)
	}
	var out struct{ Version string }
	if err := json.Unmarshal(b, &out); err != nil {
		return "", fmt.Errorf("GET %s: %q: %w", host, b, err)
	}
	return out.Version, nil
}

// TestServerTwoAppsOnTwoAgents runs `shoal server` with two real agents
// joined with tokens from its admin API: two apps deployed through the
// client (artifact upload, then deploy, which creates each app) are
// served by host name, a second catch-all is refused naming the first,
// requests without an app are refused naming the apps, and a restart of
// the server on the same data directory reopens both apps from the store,
// adopts their running instances (none restarted) and serves them again.
func TestServerTwoAppsOnTwoAgents(t *testing.T) {
	dir := t.TempDir()
	agents := &agentSet{}
	t.Cleanup(agents.stop)
	ts := startServer(t, serverConfig(t, dir, "127.0.0.1:0"))
	if !strings.HasPrefix(ts.ready.AdminURL, "http://127.0.0.1:") || !strings.HasPrefix(ts.ready.FleetURL, "https://127.0.0.1:") ||
		!strings.HasPrefix(ts.ready.CAPin, "sha256:") || ts.ready.Apps != 0 {
		t.Fatalf("ready = %+v", ts.ready)
	}
	agents.startAgent(t, ts, "host-a")
	agents.startAgent(t, ts, "host-b")
	ctx := testenv.Context(t, 3*time.Minute)
	admin := ts.client(t, "")
	testenv.Eventually(t, 30*time.Second, func() error {
		hosts, err := admin.Hosts(ctx)
		if err != nil {
			return err
		}
		var ready []string
		for _, h := range hosts {
			if h.State == api.HostReady {
				ready = append(ready, h.Name)
			}
		}
		if !slices.Equal(ready, []string{"host-a", "host-b"}) {
			return fmt.Errorf("ready hosts %v of %+v", ready, hosts)
		}
		return nil
	})
	if _, err := admin.Status(ctx); !client.IsStatus(err, http.StatusNotFound) || !strings.Contains(err.Error(), "shoal deploy creates") {
		t.Fatalf("status with no app: %v, want 404 saying deploy creates one", err)
	}

	web, api1 := ts.client(t, "web"), ts.client(t, "api")
	for _, d := range []struct {
		c       *client.Client
		text    string
		version string
	}{{web, appYAML(t, "web", "web.test", "'*.web.test'"), "web-1"}, {api1, appYAML(t, "api"), "api-1"}} {
		res, err := deployApp(t, ctx, d.c, d.text, d.version)
		if err != nil || !res.OK || res.Version != 1 {
			t.Fatalf("deploy %s: %+v, %v", d.c.App, res, err)
		}
	}
	lb := ts.s.Addr().String()
	for host, want := range map[string]string{"web.test": "web-1", "a.web.test": "web-1", "api.test": "api-1", "other.example": "api-1"} {
		if got, err := getVersion(ctx, lb, host); err != nil || got != want {
			t.Fatalf("GET with Host %s: %q, %v; want %q", host, got, err, want)
		}
	}

	// A second catch-all is refused, naming the first; nothing is made.
	res, err := deployApp(t, ctx, ts.client(t, "third"), appYAML(t, "third"), "third-1")
	if !client.IsStatus(err, http.StatusConflict) || !strings.Contains(err.Error(), "app api is the balancer's catch-all") {
		t.Fatalf("a second catch-all: %+v, %v; want 409 naming api", res, err)
	}
	// A host another app has is refused too.
	if _, err := deployApp(t, ctx, ts.client(t, "fourth"), appYAML(t, "fourth", "web.test"), "fourth-1"); !client.IsStatus(err, http.StatusConflict) ||
		!strings.Contains(err.Error(), "app web has host web.test") {
		t.Fatalf("a taken host: %v; want 409 naming web", err)
	}
	if _, err := admin.Status(ctx); !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "api, web") {
		t.Fatalf("status without an app: %v, want 400 naming the apps", err)
	}
	if _, err := ts.client(t, "nope").Status(ctx); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("status of an unknown app: %v, want 404", err)
	}
	apps, err := admin.Apps(ctx)
	if err != nil || len(apps) != 2 || apps[0].Name != "api" || apps[1].Name != "web" || apps[1].Release != 1 ||
		!slices.Equal(apps[1].Hosts, []string{"web.test", "*.web.test"}) || len(apps[0].Hosts) != 0 {
		t.Fatalf("apps = %+v, %v", apps, err)
	}
	hosts, err := admin.Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].Instances+hosts[1].Instances != 2 {
		t.Fatalf("hosts = %+v, %v; want the two instances on them", hosts, err)
	}
	evs, err := admin.HostEvents(ctx, 0, 0)
	if err != nil || len(evs) == 0 || !strings.Contains(evs[0].Reason, "host-") {
		t.Fatalf("host events = %+v, %v", evs, err)
	}

	before := map[string]string{}
	for _, app := range []string{"web", "api"} {
		st, err := ts.client(t, app).Status(ctx)
		if err != nil || len(st.Instances) != 1 {
			t.Fatalf("%s before the restart: %+v, %v", app, st, err)
		}
		before[app] = st.Instances[0].ID
	}

	// Restart on the same data directory and fleet port (the agents'
	// URL): the instances keep running and are adopted, none started.
	fleetAddr := ts.s.FleetAddr().String()
	ts.stop()
	ts = startServer(t, serverConfig(t, dir, fleetAddr))
	if ts.ready.Apps != 2 {
		t.Fatalf("reopened %d apps, want 2", ts.ready.Apps)
	}
	lb = ts.s.Addr().String()
	testenv.Eventually(t, 60*time.Second, func() error {
		for host, want := range map[string]string{"web.test": "web-1", "api.test": "api-1"} {
			if got, err := getVersion(ctx, lb, host); err != nil || got != want {
				return fmt.Errorf("after the restart, GET with Host %s: %q, %v; want %q", host, got, err, want)
			}
		}
		return nil
	})
	for _, app := range []string{"web", "api"} {
		st, err := ts.client(t, app).Status(ctx)
		if err != nil || st.App != app || st.Release != 1 || len(st.Instances) != 1 || st.Instances[0].ID != before[app] {
			t.Fatalf("%s after the restart: %+v, %v; want its instance %s adopted", app, st, err, before[app])
		}
	}
}

// testLogger writes the daemons' logs to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tWriter is an io.Writer onto t.Log, which outlives nothing: writes after
// the test ended are dropped by the testing package with a panic, so the
// daemons must be stopped first (they are, in Cleanup order).
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
