package e2e

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestClusterBackupRestore backs up a cluster of three `shoal server`s
// (the real binary, 127.0.0.1) through a follower with `shoal backup`,
// after a scale acknowledged through the other follower; then, the whole
// cluster stopped, `shoal restore --cluster` refuses s1's data_dir while
// it holds raft state and a cut copy of the backup, and, the raft state
// moved aside, makes s1 a new cluster of one from the backup: it leads
// alone and its app's desired count is the scale's.
func TestClusterBackupRestore(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 2, 8)
	ctx := testenv.Context(t, 8*time.Minute)

	s1, s2, s3 := startCluster(t, ctx, bin)
	envOf := clusterEnv
	code, out := runShoalEnv(t, bin, t.TempDir(), envOf(s1), "join-token", "--ttl", "10m", "--role", "agent")
	if code != 0 || !strings.HasPrefix(out, "shoal-join-v1.") {
		t.Fatalf("shoal join-token: exit %d\n%s", code, out)
	}
	newServerAgent(t, s1.FleetURL, "host-a", strings.TrimSpace(out)).start(t, bin)
	if code, out := runShoalFor(t, 4*time.Minute, bin, app, envOf(s1), "deploy"); code != 0 || !strings.Contains(out, "deploy: v1 serves") {
		t.Fatalf("shoal deploy: exit %d\n%s", code, out)
	}
	if err := scaleTo(ctx, client.New(s3.AdminURL, s3.Token), 3); err != nil {
		t.Fatalf("scale through the follower s3: %v", err)
	}

	// The backup, through the follower s2 (forwarded to the leader,
	// whose Barrier makes the acknowledged scale part of it).
	backups := t.TempDir()
	backup := filepath.Join(backups, "cluster.db")
	code, out = runShoalEnv(t, bin, backups, envOf(s2), "backup", "-o", backup)
	if code != 0 || !strings.Contains(out, "goapp at v1") {
		t.Fatalf("shoal backup through the follower s2: exit %d\n%s", code, out)
	}
	t.Logf("shoal backup: %s", strings.TrimSpace(out))
	if code, out := runShoalEnv(t, bin, backups, envOf(s2), "backup", "-o", backup); code == 0 || !strings.Contains(out, "exists") {
		t.Fatalf("shoal backup over an existing file: exit %d\n%s", code, out)
	}

	// The whole cluster stops; s1 comes back as a new cluster of one, its
	// fleet listener where it was (the agent dials it) and its raft
	// listener at the address the restore records.
	fleetAddr := hostPort(t, s1.FleetURL)
	for _, s := range []*clusterServer{s1, s2, s3} {
		s.Close()
	}
	cfg := filepath.Join(s1.dir, "server.yaml")
	if err := os.WriteFile(cfg, []byte(clusterServerYAML("s1", true, "127.0.0.1:0", fleetAddr, s1.raft)), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(s1.dir, "data")
	raftDir := filepath.Join(data, "raft")
	if code, out := runShoalEnv(t, bin, s1.dir, nil, "restore", "--cluster", "-c", cfg, backup); code == 0 || !strings.Contains(out, "already holds raft state") {
		t.Fatalf("shoal restore --cluster into a data_dir with raft state: exit %d\n%s", code, out)
	}
	if err := os.Rename(raftDir, raftDir+".old"); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(backups, "cut.db")
	if err := os.WriteFile(cut, whole[:len(whole)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runShoalEnv(t, bin, s1.dir, nil, "restore", "--cluster", "-c", cfg, cut); code == 0 || !strings.Contains(out, cut) {
		t.Fatalf("shoal restore --cluster of a cut backup: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(raftDir); !os.IsNotExist(err) {
		t.Fatalf("a refused restore left %s (%v)", raftDir, err)
	}
	code, out = runShoalEnv(t, bin, s1.dir, nil, "restore", "--cluster", "-c", cfg, backup)
	if code != 0 || !strings.Contains(out, "s1 at "+s1.raft) || !strings.Contains(out, "shoal servers add") {
		t.Fatalf("shoal restore --cluster: exit %d\n%s", code, out)
	}
	t.Logf("shoal restore --cluster:\n%s", out)

	srv, err := testenv.StartServer(ctx, exec.Command(bin, "server", "-c", cfg), data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("output of the restored shoal server s1:\n%s", srv.Output())
		}
	})
	r := &clusterServer{id: "s1", dir: s1.dir, raft: s1.raft, Server: srv}
	testenv.Eventually(t, 30*time.Second, func() error {
		st, err := r.self(ctx)
		if err == nil && st.Role != "Leader" {
			err = fmt.Errorf("the restored s1 is %s", st.Role)
		}
		return err
	})
	c := client.New(r.AdminURL, r.Token)
	testenv.Eventually(t, 60*time.Second, func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Desired != 3 || st.Release != 1 {
			return fmt.Errorf("the restored cluster: desired %d at v%d, want the backup's 3 at v1", st.Desired, st.Release)
		}
		return nil
	})
	servers, err := c.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 || servers[0].ID != "s1" || servers[0].Address != s1.raft || servers[0].Role != "Leader" {
		t.Fatalf("servers of the restored cluster: %+v, want s1 alone, leading, at %s", servers, s1.raft)
	}
}

// hostPort returns the host:port of rawURL.
func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
