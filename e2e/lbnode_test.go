package e2e

import (
	"context"
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

var lbHTTPRe = regexp.MustCompile(`msg=listening listener=http addr=(\S+)`)

// TestLBNodeFollowsServer runs the real binary: `shoal server`, one
// agent, `shoal deploy`, then `shoal lb` with a server section and a
// token from `shoal join-token --role lb`: the app serves through the
// node, and `shoal hosts` lists the node, up to date; with the server stopped (SIGTERM) the node keeps serving, and a
// node restarted then serves its saved configuration at once.
func TestLBNodeFollowsServer(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 1, 2)
	ctx := testenv.Context(t, 4*time.Minute)
	srv := startLoopbackServer(t, ctx, bin)
	adminURL, fleetURL := srv.AdminURL, srv.FleetURL
	env := append(os.Environ(), "SHOAL_ADMIN_URL="+adminURL, "SHOAL_TOKEN="+srv.Token)
	joinToken := func(role string) string { return joinTokenOf(t, bin, env, role) }
	newServerAgent(t, fleetURL, "host-a", joinToken("agent")).start(t, bin)
	deployFirst(t, ctx, bin, app, env)

	lbCfg := writeLBNode(t, fleetURL, "lb-1", joinToken("lb"))
	startNode := func() (*testenv.Process, string) { return startLBNode(t, ctx, bin, lbCfg) }
	lb, lbURL := startNode()
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(lbURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		page, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "goapp") {
			return fmt.Errorf("the node's answer: %d %q", resp.StatusCode, page)
		}
		return nil
	})

	// shoal hosts lists the node after the agent, in a second table.
	testenv.Eventually(t, 30*time.Second, func() error { return nodeFollowing(shoalHosts(t, bin, env)) })
	code, out := runShoalEnv(t, bin, t.TempDir(), env, "hosts")
	if code != 0 || !regexp.MustCompile(`(?m)^BALANCER\s+ADDRESS\s+STATE\s+CONFIG\s+LAST CALL\nlb-1\s+127\.0\.0\.1\s+ready\s+(\d+)/(\d+)\s+\d+s ago$`).MatchString(out) {
		t.Fatalf("shoal hosts: exit %d\n%s", code, out)
	}

	// The server stops: the node keeps serving.
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := srv.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("shoal server after SIGTERM: exit %d, %v", code, err)
	}
	if page := get(t, lbURL); !strings.Contains(page, "goapp") {
		t.Fatalf("the node with the server down: %q", page)
	}
	// The node restarts while the server is down: it serves at once.
	if err := lb.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := lb.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("shoal lb after SIGTERM: exit %d, %v\n%s", code, err, lb.Output())
	}
	lb, lbURL = startNode()
	if page := get(t, lbURL); !strings.Contains(page, "goapp") {
		t.Fatalf("the restarted node with the server down: %q\n%s", page, lb.Output())
	}
	if err := lb.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := lb.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("shoal lb after SIGTERM: exit %d, %v\n%s", code, err, lb.Output())
	}
}

// joinTokenOf makes a join token of role with `shoal join-token` against
// the server that env names (SHOAL_ADMIN_URL, SHOAL_TOKEN).
func joinTokenOf(t *testing.T, bin string, env []string, role string) string {
	t.Helper()
	code, out := runShoalEnv(t, bin, t.TempDir(), env, "join-token", "--ttl", "10m", "--role", role)
	if code != 0 || !strings.HasPrefix(out, "shoal-join-v1.") {
		t.Fatalf("shoal join-token --role %s: exit %d\n%s", role, code, out)
	}
	return strings.TrimSpace(out)
}

// waitServes waits up to 30 s until a GET of url answers 200.
func waitServes(t *testing.T, url string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the answer of %s: %s", url, resp.Status)
		}
		return nil
	})
}

// deployFirst runs `shoal deploy` in the folder app with env and requires
// v1 to serve. Bounded by ctx, not runShoalEnv's minute: the build of the
// app on a loaded machine can take most of one.
func deployFirst(t *testing.T, ctx context.Context, bin, app string, env []string) {
	t.Helper()
	deploy := exec.CommandContext(ctx, bin, "deploy")
	deploy.Dir, deploy.Env = app, env
	if out, err := deploy.CombinedOutput(); err != nil || !strings.Contains(string(out), "deploy: v1 serves") {
		t.Fatalf("shoal deploy to the server: %v\n%s", err, out)
	}
}

// writeLBNode writes the lb.yaml of a balancer node called name (one
// listener "http" on an ephemeral port of 127.0.0.1, following the server
// at fleetURL) and its join token file, and returns the lb.yaml's path.
func writeLBNode(t *testing.T, fleetURL, name, token string) string {
	t.Helper()
	node := t.TempDir()
	cfg := filepath.Join(node, "lb.yaml")
	yaml := fmt.Sprintf(`listeners: [{name: http, listen: "127.0.0.1:0"}]
server: {url: %q, join_token_file: token, name: %s, data_dir: data}
`, fleetURL, name)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(node, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startLBNode starts `shoal lb -c cfg` and returns it with the URL of its
// listener "http".
func startLBNode(t *testing.T, ctx context.Context, bin, cfg string) (*testenv.Process, string) {
	t.Helper()
	p := testenv.Start(t, bin, "lb", "-c", cfg)
	m, err := p.WaitForLine(ctx, lbHTTPRe)
	if err != nil {
		t.Fatalf("shoal lb: %v\n%s", err, p.Output())
	}
	return p, "http://" + m[1] + "/"
}
