package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestClusterDeployWaitsForArtifactMajority runs three `shoal server`s as
// a Raft cluster (the real binary, 127.0.0.1) and one agent, and deploys
// while followers cannot take the artifact:
//   - both followers refuse it (their artifact store cannot write): the
//     deploy fails naming both, no release is made, v1 keeps serving;
//   - one follower refuses, the other takes it: the deploy succeeds with
//     the majority; the release it prunes (keep_releases 1) loses its
//     artifact on the followers too;
//   - one follower does not answer at all (SIGSTOP): the deploy succeeds
//     with the other; the leader is SIGKILLed as soon as the deploy is
//     acknowledged, and the new leader holds the artifact and runs the
//     release, launching it on a host that joins after the failover (so
//     the host takes the artifact from the new leader).
func TestClusterDeployWaitsForArtifactMajority(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 1, 4)
	ctx := testenv.Context(t, 12*time.Minute)

	s1, s2, s3 := startCluster(t, ctx, bin)
	newServerAgent(t, s1.FleetURL, "host-a", joinTokenOf(t, bin, clusterEnv(s1), "agent")).start(t, bin)
	keepReleases(t, app, 1) // before the first deploy: a deploy's new keep_releases waits for the app's next start
	d1 := deployVersion(t, bin, app, s1, 1)

	// Both followers refuse: nothing is deployed.
	breakArtifactStore(t, s2)
	breakArtifactStore(t, s3)
	setAppVersion(t, app, "v2")
	code, out := runShoalFor(t, 4*time.Minute, bin, app, clusterEnv(s1), "deploy")
	if code == 0 || !strings.Contains(out, "held by 1 of the cluster's 3 servers") ||
		!strings.Contains(out, "s2 (") || !strings.Contains(out, "s3 (") {
		t.Fatalf("shoal deploy with both followers refusing the artifact: exit %d, want a failure naming s2 and s3\n%s", code, out)
	}
	t.Logf("the refused deploy: %s", lastLine(out))
	c1 := client.New(s1.AdminURL, s1.Token)
	st, err := c1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Release != 1 || st.InService != 1 {
		t.Fatalf("after the refused deploy: v%d with %d in service, want v1 serving", st.Release, st.InService)
	}
	rels, err := c1.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 1 {
		t.Fatalf("after the refused deploy: %d releases, want v1 alone: %+v", len(rels), rels)
	}

	// s2 takes it, s3 still refuses: the majority is enough. With
	// keep_releases 1, v1 is pruned with its artifact, on the followers too.
	repairArtifactStore(t, s2)
	d2 := deployVersion(t, bin, app, s1, 2)
	if !holdsArtifact(ctx, t, s2, d2) {
		t.Fatalf("the deploy of v2 was acknowledged but s2 does not hold its artifact %s", d2)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, s := range []*clusterServer{s2, s3} {
			if holdsArtifact(ctx, t, s, d1) {
				return fmt.Errorf("%s still holds the artifact %s of the pruned v1", s.id, d1)
			}
		}
		return nil
	})

	// s3 stopped: it cannot answer. v3 commits with s1 and s2; the leader
	// (s1, or s2 if a loaded machine moved the lead) dies right after the
	// acknowledgement.
	repairArtifactStore(t, s3)
	if err := s3.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	setAppVersion(t, app, "v3")
	d3 := deployVersion(t, bin, app, s1, 3)
	killed, other := s1, s2
	if st, err := s2.self(ctx); err == nil && st.Role == "Leader" {
		killed, other = s2, s1
	}
	if err := killed.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := s3.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(ctx, t, other, s3)
	t.Logf("the leader %s killed right after the deploy of v3; %s leads", killed.id, leader.id)
	if !holdsArtifact(ctx, t, leader, d3) {
		t.Fatalf("the new leader %s does not hold the artifact %s of the acknowledged v3", leader.id, d3)
	}
	cl := client.New(leader.AdminURL, leader.Token)
	newServerAgent(t, leader.FleetURL, "host-b", joinTokenOf(t, bin, clusterEnv(leader), "agent")).start(t, bin)
	testenv.Eventually(t, 60*time.Second, func() error {
		hosts, err := cl.Hosts(ctx)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name == "host-b" && h.State == api.HostReady {
				return nil
			}
		}
		return fmt.Errorf("host-b is not ready on %s: %+v", leader.id, hosts)
	})
	if err := scaleTo(ctx, cl, 2); err != nil {
		t.Fatalf("scale to 2 on the new leader %s: %v", leader.id, err)
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if st.Release != 3 || st.Digest != d3 {
			return fmt.Errorf("the new leader runs v%d (%s), want v3 (%s)", st.Release, st.Digest, d3)
		}
		for _, in := range st.Instances {
			if in.Host == "host-b" && in.Release == 3 && in.State == api.InService {
				return nil
			}
		}
		return fmt.Errorf("no instance of v3 in service on host-b: %+v", st.Instances)
	})
	// The other survivor takes it too.
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, s := range []*clusterServer{other, s3} {
			if !holdsArtifact(ctx, t, s, d3) {
				return fmt.Errorf("%s does not hold %s yet", s.id, d3)
			}
		}
		return nil
	})
}

// waitLeader waits up to a minute until one of servers leads, and
// returns it.
func waitLeader(ctx context.Context, t *testing.T, servers ...*clusterServer) *clusterServer {
	t.Helper()
	var leader *clusterServer
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, s := range servers {
			if st, err := s.self(ctx); err == nil && st.Role == "Leader" {
				leader = s
				return nil
			}
		}
		return fmt.Errorf("no leader among %d servers", len(servers))
	})
	return leader
}

// deployVersion deploys app through s, expects release v to serve and
// returns its artifact's digest.
func deployVersion(t *testing.T, bin, app string, s *clusterServer, v int) string {
	t.Helper()
	code, out := runShoalFor(t, 4*time.Minute, bin, app, clusterEnv(s), "deploy")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("deploy: v%d serves", v)) {
		t.Fatalf("shoal deploy of v%d through %s: exit %d\n%s", v, s.id, code, out)
	}
	st, err := client.New(s.AdminURL, s.Token).Status(testenv.Context(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if st.Release != v || st.Digest == "" {
		t.Fatalf("after the deploy of v%d: v%d (%q)", v, st.Release, st.Digest)
	}
	return st.Digest
}

// setAppVersion makes the app's next build another artifact: its answer
// names version.
func setAppVersion(t *testing.T, app, version string) {
	t.Helper()
	p := filepath.Join(app, "main.go")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	i := strings.Index(src, `"hello `)
	j := strings.Index(src, `from %s`)
	if i < 0 || j < i {
		t.Fatalf("%s: no hello line to change", p)
	}
	src = src[:i] + `"hello ` + version + ` ` + src[j:]
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// keepReleases sets the app's keep_releases to n.
func keepReleases(t *testing.T, app string, n int) {
	t.Helper()
	p := filepath.Join(app, "shoal.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, fmt.Appendf(b, "\nkeep_releases: %d\n", n), 0o644); err != nil {
		t.Fatal(err)
	}
}

// breakArtifactStore makes s's artifact store refuse every artifact: its
// temporary folder becomes a file (root ignores permissions).
func breakArtifactStore(t *testing.T, s *clusterServer) {
	t.Helper()
	tmp := filepath.Join(s.dir, "data", "artifacts", "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, []byte("not a folder: the test breaks this store\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// repairArtifactStore undoes breakArtifactStore.
func repairArtifactStore(t *testing.T, s *clusterServer) {
	t.Helper()
	tmp := filepath.Join(s.dir, "data", "artifacts", "tmp")
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
}

// holdsArtifact reports whether s holds artifact d in its own store
// (HEAD /v1/cluster/artifacts/{d}: never forwarded to the leader).
func holdsArtifact(ctx context.Context, t *testing.T, s *clusterServer, d string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.AdminURL+"/v1/cluster/artifacts/"+d, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
