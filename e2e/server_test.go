package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestServerWithTwoAgents runs the real binary as a fleet on loopback:
// `shoal server`, two `shoal agent` processes joined with tokens from
// `shoal join-token`, then `shoal deploy` from an app folder with
// SHOAL_ADMIN_URL and SHOAL_TOKEN (the server creates the app), `shoal
// hosts`, `shoal apps` and `shoal status --app` from another folder; the
// app serves through the server's balancer; SIGTERM stops the server
// (exit 0) and leaves every instance running on the agents.
func TestServerWithTwoAgents(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 2, 2)
	ctx := testenv.Context(t, 4*time.Minute)
	srv := startLoopbackServer(t, ctx, bin)
	adminURL, fleetURL, lbURL := srv.AdminURL, srv.FleetURL, srv.LBURL
	dir := t.TempDir() // a folder other than the app's, for the client verbs
	env := append(os.Environ(), "SHOAL_ADMIN_URL="+adminURL, "SHOAL_TOKEN="+srv.Token)

	var agents []*agentHost
	for _, name := range []string{"host-a", "host-b"} {
		code, out := runShoalEnv(t, bin, dir, env, "join-token", "--ttl", "10m")
		token := strings.TrimSpace(out)
		if code != 0 || !strings.HasPrefix(token, "shoal-join-v1.") || strings.Contains(token, "\n") {
			t.Fatalf("shoal join-token: exit %d\n%s", code, out)
		}
		h := newServerAgent(t, fleetURL, name, token)
		h.start(t, bin)
		agents = append(agents, h)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		code, out := runShoalEnv(t, bin, dir, env, "hosts", "-o", "json")
		var hosts []struct{ Name, State string }
		if code != 0 || json.Unmarshal([]byte(out), &hosts) != nil {
			return fmt.Errorf("shoal hosts: exit %d: %s", code, out)
		}
		if len(hosts) != 2 || hosts[0].State != "ready" || hosts[1].State != "ready" {
			return fmt.Errorf("hosts: %+v", hosts)
		}
		return nil
	})

	code, out := runShoalEnv(t, bin, app, env, "deploy")
	if code != 0 || !strings.Contains(out, "deploy: v1 serves") {
		t.Fatalf("shoal deploy to the server: exit %d\n%s", code, out)
	}
	code, out = runShoalEnv(t, bin, dir, env, "status", "--app", "goapp")
	if code != 0 || !strings.Contains(out, "group goapp: release v1, 2/2 in service") {
		t.Fatalf("shoal status --app goapp: exit %d\n%s", code, out)
	}
	code, out = runShoalEnv(t, bin, dir, env, "apps")
	if code != 0 || !regexp.MustCompile(`goapp\s+v1\s+2/2\s+\* \(catch-all\)\s+/`).MatchString(out) {
		t.Fatalf("shoal apps: exit %d\n%s", code, out)
	}
	code, out = runShoalEnv(t, bin, dir, env, "hosts")
	if code != 0 || !strings.Contains(out, "host-a") || !strings.Contains(out, "host-b") {
		t.Fatalf("shoal hosts: exit %d\n%s", code, out)
	}
	if page := get(t, lbURL+"/"); !strings.Contains(page, "goapp") {
		t.Fatalf("the balancer's answer: %q", page)
	}
	// The dashboard of the server: goapp's page, its instances on the
	// agents, the hosts card.
	ui := loginDashboard(t, adminURL, srv.Token)
	resp, err := ui.Get(adminURL + "/ui/?app=goapp")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `id="group-goapp"`) || !strings.Contains(string(b), `data-host="host-`) ||
		!strings.Contains(string(b), `id="fleet"`) {
		t.Fatalf("the server's dashboard, goapp's page: %s\n%s", resp.Status, b)
	}

	// The instances, from the agents' pid records.
	var pids []int
	for _, h := range agents {
		pids = append(pids, recordedPIDs(t, filepath.Join(h.data, "runtime", "pids"))...)
	}
	if len(pids) != 2 {
		t.Fatalf("%d instances recorded on the agents, want 2", len(pids))
	}
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := srv.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("shoal server after SIGTERM: exit %d, %v\n%s", code, err, srv.Output())
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Errorf("instance pid %d ended with the server", pid)
		}
	}
}

// startLoopbackServer starts `shoal server` with every listener on
// 127.0.0.1:0 (its admin API plain HTTP), a 200 ms heartbeat, hosts lost
// after 3 s and a 2 s drain, its data in a temporary folder, and waits
// until it is ready. It is closed when the test ends; its output is
// logged when the test failed.
func startLoopbackServer(t *testing.T, ctx context.Context, bin string) *testenv.Server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "server.yaml")
	yaml := `data_dir: data
admin: {listen: "127.0.0.1:0"}
fleet: {listen: "127.0.0.1:0", heartbeat: 200ms, lost_after: 3s}
balancer: {listen: "127.0.0.1:0", drain_timeout: 2s}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := testenv.StartServer(ctx, exec.Command(bin, "server", "-c", cfg), filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("output of shoal server:\n%s", srv.Output())
		}
	})
	return srv
}

// newServerAgent writes agent.yaml (an ephemeral port of 127.0.0.1, the
// server at fleetURL) and the token file of a host, and registers a
// cleanup that kills what its runtime recorded: instances outlive agents.
func newServerAgent(t *testing.T, fleetURL, name, token string) *agentHost {
	t.Helper()
	dir := t.TempDir()
	h := &agentHost{name: name, dir: dir, cfg: filepath.Join(dir, "agent.yaml"), data: filepath.Join(dir, "data")}
	yaml := fmt.Sprintf("server: %s\njoin_token_file: token\nname: %s\nlisten: 127.0.0.1:0\nadvertise: 127.0.0.1\ndata_dir: data\n", fleetURL, name)
	if err := os.WriteFile(h.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killRecorded(t, filepath.Join(h.data, "runtime", "pids")) })
	return h
}

// recordedPIDs returns the app pid of every pid record in dir.
func recordedPIDs(t *testing.T, dir string) []int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			PID int `json:"pid"`
		}
		if err := json.Unmarshal(b, &rec); err != nil || rec.PID <= 1 {
			t.Fatalf("pid record %s: %s (%v)", e.Name(), b, err)
		}
		pids = append(pids, rec.PID)
	}
	return pids
}
