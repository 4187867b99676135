package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/testenv"
)

var raftAddrRe = regexp.MustCompile(`msg="cluster node open" server=(\S+) raft=(\S+)`)

// clusterServer is one `shoal server` of a test's cluster.
type clusterServer struct {
	id, dir, raft string
	*testenv.Server
}

// startClusterServer starts server id of a cluster on 127.0.0.1 with the
// CA and admin token of dir0 (copied into its data_dir before its first
// start, as an operator would), and returns it once it serves.
func startClusterServer(t *testing.T, ctx context.Context, bin, id string, bootstrap bool, caDir, tokenFile string) *clusterServer {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	copyPrivateDir(t, caDir, filepath.Join(data, "ca"))
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, adminapi.TokenFile), tok, 0o600); err != nil {
		t.Fatal(err)
	}
	return launchClusterServer(t, ctx, bin, id, dir, bootstrap)
}

// launchClusterServer starts server id of a cluster on 127.0.0.1 from
// dir (server.yaml written there, its data in dir/data) with args after
// its -c, and returns it once it serves.
func launchClusterServer(t *testing.T, ctx context.Context, bin, id, dir string, bootstrap bool, args ...string) *clusterServer {
	t.Helper()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "server.yaml")
	if err := os.WriteFile(cfg, []byte(clusterServerYAML(id, bootstrap, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := testenv.StartServer(ctx, exec.Command(bin, append([]string{"server", "-c", cfg}, args...)...), data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("output of shoal server %s:\n%s", id, srv.Output())
		}
	})
	m, err := srv.WaitForLine(ctx, raftAddrRe)
	if err != nil {
		t.Fatal(err)
	}
	return &clusterServer{id: id, dir: dir, raft: m[2], Server: srv}
}

// clusterServerYAML is the server.yaml of server id of a test's cluster,
// its data in "data" beside it, with its admin, fleet and raft listeners
// at those addresses.
func clusterServerYAML(id string, bootstrap bool, admin, fleet, raft string) string {
	return fmt.Sprintf(`data_dir: data
admin: {listen: %q}
fleet: {listen: %q, heartbeat: 200ms, lost_after: 3s}
balancer: {listen: "127.0.0.1:0", drain_timeout: 2s}
cluster: {id: %s, listen: %q, bootstrap: %t, election_timeout: 3s}
`, admin, fleet, id, raft, bootstrap)
}

// startCluster starts a cluster of three servers on 127.0.0.1 sharing
// one fleet CA and admin token: s1 formed it (bootstrap) and leads, s2
// and s3 were added with `shoal servers add`.
func startCluster(t *testing.T, ctx context.Context, bin string) (s1, s2, s3 *clusterServer) {
	t.Helper()
	seed := t.TempDir()
	if _, err := pki.LoadOrCreateCA(filepath.Join(seed, "ca")); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(seed, adminapi.TokenFile)
	if _, err := adminapi.LoadOrCreateToken(tokenFile); err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(seed, "ca")
	s1 = startClusterServer(t, ctx, bin, "s1", true, caDir, tokenFile)
	testenv.Eventually(t, 30*time.Second, func() error {
		st, err := s1.self(ctx)
		if err == nil && st.Role != "Leader" {
			err = fmt.Errorf("s1 is %s", st.Role)
		}
		return err
	})
	s2 = startClusterServer(t, ctx, bin, "s2", false, caDir, tokenFile)
	s3 = startClusterServer(t, ctx, bin, "s3", false, caDir, tokenFile)
	for _, s := range []*clusterServer{s2, s3} {
		if code, out := runShoalEnv(t, bin, t.TempDir(), clusterEnv(s1), "servers", "add", s.id, s.raft); code != 0 {
			t.Fatalf("shoal servers add %s %s: exit %d\n%s", s.id, s.raft, code, out)
		}
	}
	return s1, s2, s3
}

// clusterEnv is the environment of a shoal command sent to s's admin API.
func clusterEnv(s *clusterServer) []string {
	return append(os.Environ(), "SHOAL_ADMIN_URL="+s.AdminURL, "SHOAL_TOKEN="+s.Token)
}

// copyPrivateDir copies the files of src into a new directory dst of mode
// 0700, each with its mode (a CA's key stays 0600).
func copyPrivateDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// self is GET /v1/cluster/self of s.
func (s *clusterServer) self(ctx context.Context) (api.ServerStatus, error) {
	var st api.ServerStatus
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.AdminURL+"/v1/cluster/self", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: %s", resp.Status, body)
	}
	return st, json.Unmarshal(body, &st)
}

// TestClusterLeaderKilledUnderLoad runs three `shoal server`s as a Raft
// cluster (the real binary, 127.0.0.1), one agent and a balancer node
// that follows a follower (which sends it on to the leader): GETs flow
// through the node while the leader is killed with SIGKILL; a new leader
// is elected within seconds, no GET fails, the scale acknowledged
// (through a follower, which forwarded it) before the kill is still the
// desired count after, the node follows the new leader, scale writes
// through the surviving follower are acknowledged (their latency is
// logged), and `shoal servers` lists the three.
func TestClusterLeaderKilledUnderLoad(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 2, 8)
	ctx := testenv.Context(t, 8*time.Minute)

	s1, s2, s3 := startCluster(t, ctx, bin)
	envOf := clusterEnv
	joinToken := func(role string) string {
		code, out := runShoalEnv(t, bin, t.TempDir(), envOf(s1), "join-token", "--ttl", "10m", "--role", role)
		if code != 0 || !strings.HasPrefix(out, "shoal-join-v1.") {
			t.Fatalf("shoal join-token --role %s: exit %d\n%s", role, code, out)
		}
		return strings.TrimSpace(out)
	}
	newServerAgent(t, s1.FleetURL, "host-a", joinToken("agent")).start(t, bin)
	if code, out := runShoalFor(t, 4*time.Minute, bin, app, envOf(s1), "deploy"); code != 0 || !strings.Contains(out, "deploy: v1 serves") {
		t.Fatalf("shoal deploy: exit %d\n%s", code, out)
	}

	// Every server holds the release's artifact (followers fetch it).
	waitArtifacts(t, s2, s3)

	// The balancer node follows s2, a follower: it is sent on to s1.
	_, lbp, lbURL := startClusterNode(t, ctx, bin, fmt.Sprintf("%q", s2.FleetURL), joinToken("lb"))

	load := testenv.StartLoad(ctx, lbURL, testenv.LoadOptions{Workers: 4, Every: 5 * time.Millisecond})
	defer load.Stop()
	load.RequireFlowing(t, "through the balancer node", 50, 20*time.Second)

	// A write on a follower is forwarded to the leader and acknowledged.
	c2 := client.New(s2.AdminURL, s2.Token)
	start := time.Now()
	if err := scaleTo(ctx, c2, 3); err != nil {
		t.Fatalf("scale through the follower s2: %v", err)
	}
	t.Logf("scale 3 through a follower acknowledged in %s", time.Since(start))

	// Kill the leader.
	nodeMark := lbp.Mark()
	killed := time.Now()
	if err := s1.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(ctx, t, s2, s3)
	elected := time.Since(killed)
	t.Logf("leader killed -> %s leads after %s", leader.id, elected)
	if elected > 15*time.Second {
		t.Fatalf("a new leader after %s, want within seconds", elected)
	}
	cl := client.New(leader.AdminURL, leader.Token)
	testenv.Eventually(t, 60*time.Second, func() error {
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if st.Desired != 3 {
			return fmt.Errorf("desired %d after the failover, want the acknowledged 3", st.Desired)
		}
		in := 0
		for _, i := range st.Instances {
			if i.State == api.InService {
				in++
			}
		}
		if in != 3 {
			return fmt.Errorf("%d in service, want 3", in)
		}
		return nil
	})
	t.Logf("leader killed -> the new leader serves its apps after %s", time.Since(killed))
	// The node follows the new leader (its first answer once the apps
	// started); then the surviving follower forwards scale-ups to it. (A
	// stop right after a failover waits for the node too: the new leader
	// expects the stored balancer nodes from its term's start; the
	// scale down in e2e/cluster_follow_test.go covers that.)
	if _, _, err := lbp.WaitForLineFrom(ctx, nodeMark, regexp.MustCompile(`following the server again`)); err != nil {
		t.Fatalf("the balancer node does not follow the new leader: %v", err)
	}
	follower := s2
	if leader == s2 {
		follower = s3
	}
	cf := client.New(follower.AdminURL, follower.Token)
	var took []time.Duration
	for i, n := range []int{4, 5, 6, 7, 8} {
		start := time.Now()
		if err := scaleTo(ctx, cf, n); err != nil {
			t.Fatalf("scale %d through the follower %s after the failover: %v", i, follower.id, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("scale through a follower after the failover: median %s, max %s", took[len(took)/2], took[len(took)-1])

	code, out := runShoalEnv(t, bin, t.TempDir(), envOf(follower), "servers")
	if code != 0 || !strings.Contains(out, "Leader") || !strings.Contains(out, "s1") || !strings.Contains(out, leader.id) {
		t.Fatalf("shoal servers: exit %d\n%s", code, out)
	}
	t.Logf("shoal servers:\n%s", out)
	load.RequireFlowing(t, "through the balancer node after the failover", 50, 20*time.Second)
	load.Stop()
	load.RequireNoFailure(t, "through the balancer node while the leader was killed")
	t.Logf("GETs through the node: %d ok, %d failed", load.OK(), load.Failed())
}

// runShoalFor runs the shoal binary with args in dir with env, bounded by
// d, and returns its exit code and combined output (a cluster deploy builds,
// uploads and starts instances: more than runShoalEnv's minute on a loaded
// machine).
func runShoalFor(t *testing.T, d time.Duration, bin, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(testenv.Context(t, d), bin, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("shoal %v: %v", args, err)
	}
	return 0, string(out)
}

// scaleTo sets the app's desired count through c, retrying while the
// cluster cannot answer (a 503 beyond the client's own retries, or the
// leader gone mid-call: a scale is idempotent); a refusal (4xx) is
// returned at once.
func scaleTo(ctx context.Context, c *client.Client, n int) error {
	var refused error
	err := testenv.WaitFor(ctx, func() error {
		_, err := c.Scale(ctx, n)
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status < 500 {
			refused = err
			return nil
		}
		return err
	})
	if refused != nil {
		return refused
	}
	return err
}
