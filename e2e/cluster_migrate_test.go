package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestClusterFromSingleServer moves a single `shoal server`'s store into
// a new cluster as docs/configuration.md's steps say, with its agent and
// a balancer node kept running throughout: `shoal backup` of the lone
// server, the server stopped, a cluster section added to its server.yaml,
// `shoal restore --cluster` into its own data_dir, the server started
// again (same admin and fleet addresses), two servers with its CA and
// token added with `shoal servers add`. The agent and the node are not
// re-joined: the app's instances are adopted (the same ones serve), a
// scale through a follower launches on the agent, both followers hold
// the artifact, no GET through the node fails, and with the first server
// killed a survivor leads with the scale in its replica.
func TestClusterFromSingleServer(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 2, 8)
	ctx := testenv.Context(t, 12*time.Minute)

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "server.yaml")
	lone := `data_dir: data
admin: {listen: "127.0.0.1:0"}
fleet: {listen: "127.0.0.1:0", heartbeat: 200ms, lost_after: 3s}
balancer: {listen: "127.0.0.1:0", drain_timeout: 2s}
`
	if err := os.WriteFile(cfg, []byte(lone), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := testenv.StartServer(ctx, exec.Command(bin, "server", "-c", cfg), data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("output of the lone shoal server:\n%s", srv.Output())
		}
	})
	env := append(os.Environ(), "SHOAL_ADMIN_URL="+srv.AdminURL, "SHOAL_TOKEN="+srv.Token)
	newServerAgent(t, srv.FleetURL, "host-a", joinTokenOf(t, bin, env, "agent")).start(t, bin)
	deployFirst(t, ctx, bin, app, env)
	lbp, lbURL := startLBNode(t, ctx, bin, writeLBNode(t, srv.FleetURL, "lb-1", joinTokenOf(t, bin, env, "lb")))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of shoal lb:\n%s", lbp.Output())
		}
	})
	waitServes(t, lbURL)
	load := testenv.StartLoad(ctx, lbURL, testenv.LoadOptions{Workers: 4, Every: 5 * time.Millisecond})
	defer load.Stop()
	load.RequireFlowing(t, "through the balancer node", 50, 20*time.Second)
	before, err := client.New(srv.AdminURL, srv.Token).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := instanceIDs(before)

	// 1. The backup, 2. the server stopped as an operator stops it.
	backup := filepath.Join(t.TempDir(), "lone.db")
	if code, out := runShoalEnv(t, bin, dir, env, "backup", "-o", backup); code != 0 {
		t.Fatalf("shoal backup of the lone server: exit %d\n%s", code, out)
	}
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := srv.Wait(ctx); code != 0 || err != nil {
		t.Fatalf("the lone server's stop: exit %d (%v)", code, err)
	}

	// 3. The cluster section (same admin and fleet addresses), 4. the
	// restore into the server's own data_dir, 5. the start.
	raftAddr := testenv.FreeAddr(t)
	clustered := clusterServerYAML("s1", true, hostPort(t, srv.AdminURL), hostPort(t, srv.FleetURL), raftAddr)
	if err := os.WriteFile(cfg, []byte(clustered), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := runShoalEnv(t, bin, dir, nil, "restore", "--cluster", "-c", cfg, backup)
	if code != 0 || !strings.Contains(out, "s1 at "+raftAddr) {
		t.Fatalf("shoal restore --cluster of the lone server's backup: exit %d\n%s", code, out)
	}
	p, err := testenv.StartServer(ctx, exec.Command(bin, "server", "-c", cfg), data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			t.Logf("output of s1:\n%s", p.Output())
		}
	})
	s1 := &clusterServer{id: "s1", dir: dir, raft: raftAddr, Server: p}
	c1 := client.New(s1.AdminURL, s1.Token)
	testenv.Eventually(t, 90*time.Second, func() error {
		st, err := c1.Status(ctx)
		if err != nil {
			return err
		}
		if st.Release != 1 || st.Desired != 2 || st.InService != 2 {
			return fmt.Errorf("s1: v%d, desired %d, %d in service; want the lone server's v1 with 2", st.Release, st.Desired, st.InService)
		}
		if got := instanceIDs(st); !slices.Equal(got, ids) {
			return fmt.Errorf("s1's instances %v, want the lone server's %v (adopted, not relaunched)", got, ids)
		}
		return nil
	})

	// 6. Two more servers, with s1's CA and token, 7. added.
	s2 := startClusterServer(t, ctx, bin, "s2", false, filepath.Join(data, "ca"), filepath.Join(data, adminapi.TokenFile))
	s3 := startClusterServer(t, ctx, bin, "s3", false, filepath.Join(data, "ca"), filepath.Join(data, adminapi.TokenFile))
	for _, s := range []*clusterServer{s2, s3} {
		if code, out := runShoalEnv(t, bin, t.TempDir(), clusterEnv(s1), "servers", "add", s.id, s.raft); code != 0 {
			t.Fatalf("shoal servers add %s %s: exit %d\n%s", s.id, s.raft, code, out)
		}
	}
	if err := scaleTo(ctx, client.New(s2.AdminURL, s2.Token), 3); err != nil {
		t.Fatalf("scale through the follower s2: %v", err)
	}
	testenv.Eventually(t, 90*time.Second, func() error {
		st, err := c1.Status(ctx)
		if err != nil {
			return err
		}
		if st.InService != 3 {
			return fmt.Errorf("%d in service after the scale to 3 (the agent was not re-joined)", st.InService)
		}
		for _, s := range []*clusterServer{s2, s3} {
			if !holdsArtifact(ctx, t, s, st.Digest) {
				return fmt.Errorf("%s does not hold the artifact %s yet", s.id, st.Digest)
			}
		}
		return nil
	})
	load.RequireFlowing(t, "through the balancer node after the move", 50, 20*time.Second)
	load.Stop()
	load.RequireNoFailure(t, "through the balancer node while the server moved into a cluster")
	t.Logf("GETs through the node: %d ok, %d failed", load.OK(), load.Failed())

	// The state is the cluster's: s1 killed, a survivor leads with it.
	if err := s1.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(ctx, t, s2, s3)
	testenv.Eventually(t, 60*time.Second, func() error {
		app, err := client.New(leader.AdminURL, leader.Token).Status(ctx)
		if err != nil {
			return err
		}
		if app.Release != 1 || app.Desired != 3 {
			return fmt.Errorf("the new leader %s: v%d, desired %d; want v1, 3", leader.id, app.Release, app.Desired)
		}
		return nil
	})
}

// instanceIDs are the sorted ids of st's instances in service.
func instanceIDs(st client.Status) []string {
	var ids []string
	for _, in := range st.Instances {
		if in.State == api.InService {
			ids = append(ids, in.ID)
		}
	}
	slices.Sort(ids)
	return ids
}
