package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// startJoinedCluster starts a cluster of three servers on 127.0.0.1 with
// nothing copied by hand: s1 forms it (bootstrap, its own CA and admin
// token), s2 joins through s1 and s3 through s2 (a follower, which
// forwards the add to the leader), each with `--join URL
// --join-token-file` (s1's admin.token) and no peers in its server.yaml.
// It returns once every server is a voter and the followers caught up.
func startJoinedCluster(t *testing.T, ctx context.Context, bin string) (s1, s2, s3 *clusterServer, tokenFile string) {
	t.Helper()
	s1 = launchClusterServer(t, ctx, bin, "s1", t.TempDir(), true)
	waitRole(t, ctx, s1, "Leader")
	tokenFile = filepath.Join(s1.dir, "data", adminapi.TokenFile)
	s2 = launchClusterServer(t, ctx, bin, "s2", t.TempDir(), false, "--join", s1.AdminURL, "--join-token-file", tokenFile)
	waitRole(t, ctx, s2, "Follower")
	s3 = launchClusterServer(t, ctx, bin, "s3", t.TempDir(), false, "--join", s2.AdminURL, "--join-token-file", tokenFile)
	waitVoters(t, ctx, s1, "s1", "s2", "s3")
	for _, s := range []*clusterServer{s2, s3} {
		if s.CAPin != s1.CAPin || s.Token != s1.Token {
			t.Fatalf("%s serves CA %s with token %q; the cluster's CA is %s", s.id, s.CAPin, s.Token, s1.CAPin)
		}
	}
	return s1, s2, s3, tokenFile
}

// waitRole waits until s says it has role.
func waitRole(t *testing.T, ctx context.Context, s *clusterServer, role string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		st, err := s.self(ctx)
		if err == nil && st.Role != role {
			err = fmt.Errorf("%s is %s, want %s", s.id, st.Role, role)
		}
		return err
	})
}

// waitVoters waits until the cluster, as s lists it, is exactly the
// voters ids, each answering for itself with the leader's applied index
// reached (caught up).
func waitVoters(t *testing.T, ctx context.Context, s *clusterServer, ids ...string) {
	t.Helper()
	c := client.New(s.AdminURL, s.Token)
	testenv.Eventually(t, 60*time.Second, func() error {
		list, err := c.Servers(ctx)
		if err != nil {
			return err
		}
		if len(list) != len(ids) {
			return fmt.Errorf("%d servers, want %v: %+v", len(list), ids, list)
		}
		var leaderApplied uint64
		for _, st := range list {
			if st.Role == "Leader" {
				leaderApplied = st.AppliedIndex
			}
		}
		for i, st := range list {
			if st.ID != ids[i] || !st.Voter || st.Error != "" {
				return fmt.Errorf("server %d: %+v, want voter %s", i, st, ids[i])
			}
			if st.AppliedIndex < leaderApplied {
				return fmt.Errorf("%s applied %d, the leader %d", st.ID, st.AppliedIndex, leaderApplied)
			}
		}
		if leaderApplied == 0 {
			return fmt.Errorf("no leader in %+v", list)
		}
		return nil
	})
}

// runRefusedServer runs `shoal server` from a new server.yaml in dir with
// args and returns its exit code and output: a join it must refuse.
func runRefusedServer(t *testing.T, ctx context.Context, bin, id, dir string, args ...string) (int, string) {
	t.Helper()
	cfg := filepath.Join(dir, "server.yaml")
	if err := os.WriteFile(cfg, []byte(clusterServerYAML(id, false, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")), 0o600); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, bin, append([]string{"server", "-c", cfg}, args...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("shoal server %s: %v\n%s", id, err, out)
	}
	return 0, string(out)
}

// TestClusterJoin builds a cluster of three `shoal server`s with --join
// only (no peers in a config, no CA copied), then: a write through the
// last joined server is forwarded and replicated to all; a join with a
// wrong token, one to an unreachable URL and one from a data_dir of
// another cluster are refused, exit non-zero, say why and write nothing;
// and a rerun of s3 with the same --join is harmless (it starts, is not
// added again, and the cluster still has three voters).
func TestClusterJoin(t *testing.T) {
	bin := testenv.BuildShoal(t)
	ctx := testenv.Context(t, 6*time.Minute)
	s1, s2, s3, tokenFile := startJoinedCluster(t, ctx, bin)
	if !strings.Contains(s3.Output(), `msg="added to the cluster"`) || !strings.Contains(s3.Output(), "fleet CA and admin token of the cluster in place") {
		t.Fatalf("s3 does not say it joined:\n%s", s3.Output())
	}

	// A write through s3 (a follower) reaches the leader and every replica.
	if code, out := runShoalEnv(t, bin, t.TempDir(), clusterEnv(s3), "join-token", "--ttl", "10m"); code != 0 {
		t.Fatalf("shoal join-token through s3: exit %d\n%s", code, out)
	}
	waitVoters(t, ctx, s2, "s1", "s2", "s3")

	// Refused: a wrong token; nothing written into the data_dir.
	wrong := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(wrong, []byte("not-the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	code, out := runRefusedServer(t, ctx, bin, "s4", dir, "--join", s1.AdminURL, "--join-token-file", wrong)
	if code == 0 || !strings.Contains(out, "refused the admin token") {
		t.Fatalf("join with a wrong token: exit %d, want a refusal naming the token\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "ca")); !os.IsNotExist(err) {
		t.Fatalf("a refused join left %s/data/ca (%v)", dir, err)
	}

	// Refused: an unreachable URL (a port nobody listens on).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	code, out = runRefusedServer(t, ctx, bin, "s4", t.TempDir(), "--join", dead, "--join-token-file", tokenFile)
	if code == 0 || !strings.Contains(out, "no server answered at "+dead) {
		t.Fatalf("join of an unreachable URL: exit %d, want a refusal naming it\n%s", code, out)
	}

	// Refused: a data_dir that holds another cluster's CA; it is kept.
	dir = t.TempDir()
	other, err := pki.LoadOrCreateCA(filepath.Join(dir, "data", "ca"))
	if err != nil {
		t.Fatal(err)
	}
	code, out = runRefusedServer(t, ctx, bin, "s4", dir, "--join", s2.AdminURL, "--join-token-file", tokenFile)
	if code == 0 || !strings.Contains(out, "belongs to another cluster") || !strings.Contains(out, other.Pin()) {
		t.Fatalf("join from another cluster's data_dir: exit %d, want a refusal naming its CA\n%s", code, out)
	}
	if kept, err := pki.LoadOrCreateCA(filepath.Join(dir, "data", "ca")); err != nil || kept.Pin() != other.Pin() {
		t.Fatalf("the other cluster's CA was not kept: %v", err)
	}
	// ... and one whose admin token is another cluster's.
	dir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", adminapi.TokenFile), []byte("another-clusters-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = runRefusedServer(t, ctx, bin, "s4", dir, "--join", s1.AdminURL, "--join-token-file", tokenFile)
	if code == 0 || !strings.Contains(out, "belongs to another cluster") {
		t.Fatalf("join from a data_dir with another admin token: exit %d\n%s", code, out)
	}

	// A rerun of --join for a member: it starts as the member it is (its
	// raft state is kept; its listeners took new ports here, so it has
	// the cluster update its raft address) and the cluster still has
	// three voters, s3 among them once, caught up.
	s3.Close()
	s3 = launchClusterServer(t, ctx, bin, "s3", s3.dir, false, "--join", s2.AdminURL, "--join-token-file", tokenFile)
	waitVoters(t, ctx, s1, "s1", "s2", "s3")
	waitRole(t, ctx, s3, "Follower")
	if !strings.Contains(s3.Output(), "raft address updated") || strings.Contains(s3.Output(), `msg="added to the cluster"`) {
		t.Fatalf("the rerun of s3:\n%s", s3.Output())
	}
}
