package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// startClusterServers runs three servers of one cluster in this process
// (every listener on 127.0.0.1, s1 bootstrapped and leading, s2 and s3
// added as voters and registered), sharing s1's CA and admin token.
func startClusterServers(t *testing.T, ctx context.Context) []*testServer {
	t.Helper()
	seed := t.TempDir()
	if _, err := pki.LoadOrCreateCA(filepath.Join(seed, "ca")); err != nil {
		t.Fatal(err)
	}
	if _, err := adminapi.LoadOrCreateToken(filepath.Join(seed, adminapi.TokenFile)); err != nil {
		t.Fatal(err)
	}
	var servers []*testServer
	var addrs []string
	for i, id := range []string{"s1", "s2", "s3"} {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		if err := os.CopyFS(data, os.DirFS(seed)); err != nil {
			t.Fatal(err)
		}
		// CopyFS does not keep modes: the CA and the token are private.
		if err := filepath.WalkDir(data, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				return os.Chmod(p, 0o700)
			}
			return os.Chmod(p, 0o600)
		}); err != nil {
			t.Fatal(err)
		}
		addr := testenv.FreeAddr(t)
		text := fmt.Sprintf(`data_dir: data
admin: {listen: "127.0.0.1:0"}
fleet: {listen: "127.0.0.1:0", heartbeat: 100ms, lost_after: 1500ms}
balancer: {listen: "127.0.0.1:0", drain_timeout: 1s}
cluster: {id: %s, listen: %q, bootstrap: %t, election_timeout: 3s}
`, id, addr, i == 0)
		cfg, err := config.ParseServer(filepath.Join(dir, "server.yaml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		ts := startServer(t, cfg)
		servers = append(servers, ts)
		addrs = append(addrs, addr)
		if i == 0 {
			if err := testenv.WaitFor(ctx, func() error {
				if !ts.s.cl.ready() {
					return errors.New("s1 does not lead with its apps started yet")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	s1 := servers[0]
	for i, id := range []string{"s2", "s3"} {
		// On the leader, whichever it is now (a loaded machine may hold
		// an election); adding a voter again is no change.
		if err := testenv.WaitFor(ctx, func() error {
			for _, ts := range servers {
				if ts.s.cl.node.IsLeader() {
					return ts.s.cl.node.AddVoter(ctx, id, addrs[i+1])
				}
			}
			return errors.New("no leader")
		}); err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
	}
	if err := testenv.WaitFor(ctx, func() error {
		for _, id := range []string{"s2", "s3"} {
			if _, ok, err := s1.s.st.Member(id); err != nil || !ok {
				return fmt.Errorf("%s has not registered its URLs yet (%v)", id, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return servers
}

// breakArtifacts makes ts's artifact store refuse every artifact (its
// temporary folder becomes a file) and returns the repair.
func breakArtifacts(t *testing.T, ts *testServer) func() {
	t.Helper()
	tmp := filepath.Join(ts.s.arts.Root(), "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, []byte("broken by the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// upload puts an artifact of version into ts's own store, as an upload
// to it does (straight, not through its admin API: a follower would send
// it to the leader), and returns its digest.
func upload(t *testing.T, ctx context.Context, ts *testServer, version string) string {
	t.Helper()
	d, gz := agenttest.Artifact(t, map[string]string{"version.txt": version + "\n"})
	if _, err := ts.s.uploads.PutArtifact(ctx, d, bytes.NewReader(gz)); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestHoldOnMajority checks the wait for an artifact's majority with
// three real servers of one cluster, run on s1 (the leader, or the server
// that received the upload if an election moved the lead: the wait needs
// no leadership, and peers copy from any member that holds the artifact): both followers refusing is an
// error naming both (503, nothing held but the leader's copy); one
// refusing is enough; one stopped and one taking it is enough; and a
// digest the leader lacks, or a cluster that is not one, is not waited
// for.
func TestHoldOnMajority(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	servers := startClusterServers(t, ctx)
	s1, s2, s3 := servers[0], servers[1], servers[2]

	d := upload(t, ctx, s1, "v1")
	if err := s1.s.holdOnMajority(ctx, d); err != nil {
		t.Fatalf("every server healthy: %v", err)
	}
	if !s2.s.arts.Has(d) && !s3.s.arts.Has(d) {
		t.Fatalf("held by a majority, but neither follower holds %s", d)
	}

	repair2, repair3 := breakArtifacts(t, s2), breakArtifacts(t, s3)
	d = upload(t, ctx, s1, "v2")
	err := s1.s.holdOnMajority(ctx, d)
	if err == nil || !errors.Is(err, adminapi.ErrUnavailable) ||
		!strings.Contains(err.Error(), "held by 1 of the cluster's 3 servers") ||
		!strings.Contains(err.Error(), "s2 (") || !strings.Contains(err.Error(), "s3 (") ||
		!strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("both followers refusing: %v; want a 503 naming s2 and s3 and why", err)
	}
	if s2.s.arts.Has(d) || s3.s.arts.Has(d) {
		t.Fatal("a follower holds the artifact it refused")
	}

	repair2()
	if err := s1.s.holdOnMajority(ctx, d); err != nil {
		t.Fatalf("s2 taking it, s3 refusing: %v", err)
	}
	if !s2.s.arts.Has(d) || s3.s.arts.Has(d) {
		t.Fatalf("s2 holds it: %t (want true), s3: %t (want false)", s2.s.arts.Has(d), s3.s.arts.Has(d))
	}

	repair3()
	s2.stop()
	d = upload(t, ctx, s1, "v3")
	if err := s1.s.holdOnMajority(ctx, d); err != nil {
		t.Fatalf("s2 stopped, s3 taking it: %v", err)
	}
	if !s3.s.arts.Has(d) {
		t.Fatal("s3 confirmed but does not hold the artifact")
	}

	missing, _ := agenttest.Artifact(t, map[string]string{"version.txt": "never uploaded\n"})
	if err := s1.s.holdOnMajority(ctx, missing); err != nil {
		t.Fatalf("a digest the leader lacks (the deploy reports it): %v", err)
	}
}

// TestHoldOnMajorityAloneIsImmediate: a server alone and a cluster of
// one wait for no one.
func TestHoldOnMajorityAloneIsImmediate(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	dir := t.TempDir()
	lone := startServer(t, serverConfig(t, dir, "127.0.0.1:0"))
	d := upload(t, ctx, lone, "v1")
	if err := lone.s.holdOnMajority(ctx, d); err != nil {
		t.Fatalf("a server alone: %v", err)
	}
	dir = t.TempDir()
	cfg, err := config.ParseServer(filepath.Join(dir, "server.yaml"), []byte(`data_dir: data
admin: {listen: "127.0.0.1:0"}
fleet: {listen: "127.0.0.1:0"}
balancer: {listen: "127.0.0.1:0"}
cluster: {id: s1, listen: "127.0.0.1:0", bootstrap: true, election_timeout: 1s}
`))
	if err != nil {
		t.Fatal(err)
	}
	one := startServer(t, cfg)
	if err := testenv.WaitFor(ctx, func() error {
		if !one.s.cl.ready() {
			return errors.New("not leading yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d = upload(t, ctx, one, "v1")
	if err := one.s.holdOnMajority(ctx, d); err != nil {
		t.Fatalf("a cluster of one: %v", err)
	}
}
