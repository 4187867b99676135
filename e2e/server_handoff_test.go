package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// handoffFleet is a fleet on loopback for the server's handoff tests:
// `shoal server`, one agent (host-a) running goapp's two instances, and
// one balancer node (lb-1) following the server and serving goapp.
type handoffFleet struct {
	bin     string // the binary of the agent, the node and the CLI
	srv     *testenv.Server
	cfg     string // the server's server.yaml
	data    string // its data_dir
	env     []string
	agent   *agentHost
	node    *testenv.Process
	nodeURL string
}

// startHandoffFleet starts the fleet, the server from serverBin.
func startHandoffFleet(t *testing.T, ctx context.Context, bin, serverBin string) *handoffFleet {
	t.Helper()
	app := exampleApp(t, "goapp", 2, 2)
	srv := startLoopbackServer(t, ctx, serverBin)
	f := &handoffFleet{bin: bin, srv: srv, cfg: srv.Cmd.Args[len(srv.Cmd.Args)-1],
		env: append(os.Environ(), "SHOAL_ADMIN_URL="+srv.AdminURL, "SHOAL_TOKEN="+srv.Token)}
	f.data = filepath.Join(filepath.Dir(f.cfg), "data")
	joinToken := func(role string) string {
		code, out := runShoalEnv(t, bin, t.TempDir(), f.env, "join-token", "--ttl", "10m", "--role", role)
		if code != 0 || !strings.HasPrefix(out, "shoal-join-v1.") {
			t.Fatalf("shoal join-token --role %s: exit %d\n%s", role, code, out)
		}
		return strings.TrimSpace(out)
	}
	f.agent = newServerAgent(t, srv.FleetURL, "host-a", joinToken("agent"))
	f.agent.start(t, bin)
	deployFirst(t, ctx, bin, app, f.env)
	f.node, f.nodeURL = startLBNode(t, ctx, bin, writeLBNode(t, srv.FleetURL, "lb-1", joinToken("lb")))
	testenv.Eventually(t, 30*time.Second, func() error {
		code, page, err := httpGet(ctx, f.nodeURL)
		if err != nil || code != http.StatusOK || !strings.Contains(page, "goapp") {
			return fmt.Errorf("the node's answer: %d %q %v", code, page, err)
		}
		return nil
	})
	return f
}

// fleetHost is one entry of `shoal hosts -o json`.
type fleetHost struct {
	Name, Role, State string
	Balancer          *struct {
		Addr          string
		Applied       uint64
		ServerVersion uint64 `json:"server_version"`
	}
}

// shoalHosts returns `shoal hosts -o json` from the admin API of env.
func shoalHosts(t *testing.T, bin string, env []string) []fleetHost {
	t.Helper()
	code, out := runShoalEnv(t, bin, t.TempDir(), env, "hosts", "-o", "json")
	var hosts []fleetHost
	if code != 0 || json.Unmarshal([]byte(out), &hosts) != nil {
		t.Fatalf("shoal hosts: exit %d: %s", code, out)
	}
	return hosts
}

// nodeFollowing returns an error unless hosts are the agent's host-a,
// ready, and the balancer node lb-1, ready, calling from 127.0.0.1 and
// up to date with the server's configuration.
func nodeFollowing(hosts []fleetHost) error {
	if len(hosts) != 2 || hosts[0].Name != "host-a" || hosts[0].Role != "agent" || hosts[0].State != "ready" {
		return fmt.Errorf("hosts: %+v", hosts)
	}
	n := hosts[1]
	if n.Name != "lb-1" || n.Role != "lb" || n.State != "ready" || n.Balancer == nil ||
		n.Balancer.Addr != "127.0.0.1" || n.Balancer.Applied == 0 || n.Balancer.Applied != n.Balancer.ServerVersion {
		return fmt.Errorf("balancer node: %+v %+v", n, n.Balancer)
	}
	return nil
}

// checkAfterHandoff requires that the instances the agent ran before
// (pids) still run, that the node applied a snapshot of a new epoch after
// nodeMark, and that the server serving now lists host-a ready and the
// node following it, up to date.
func (f *handoffFleet) checkAfterHandoff(t *testing.T, ctx context.Context, pids []int, nodeMark int) {
	t.Helper()
	for _, pid := range pids {
		if !alive(pid) {
			t.Errorf("instance pid %d ended with the handoff", pid)
		}
	}
	if now := recordedPIDs(t, filepath.Join(f.agent.data, "runtime", "pids")); len(now) != len(pids) {
		t.Errorf("the agent records %d instances after the handoff, %d before", len(now), len(pids))
	}
	if _, _, err := f.node.WaitForLineFrom(ctx, nodeMark, regexp.MustCompile(`msg="balancer configuration applied".* snapshot=true routes=1 pools=1`)); err != nil {
		t.Fatalf("the node did not follow the new server: %v", err)
	}
	testenv.Eventually(t, 30*time.Second, func() error { return nodeFollowing(shoalHosts(t, f.bin, f.env)) })
}

// TestServerHandoffUnderLoad: a second `shoal server -c server.yaml`
// takes over every socket of the running one under constant load through
// the server's balancer and through a balancer node: no request fails;
// the old server exits 0; the agent's instances keep running, adopted by
// the new server, which lists the agent ready; the node follows the new
// server.
func TestServerHandoffUnderLoad(t *testing.T) {
	bin := testenv.BuildShoal(t)
	ctx := testenv.Context(t, 6*time.Minute)
	f := startHandoffFleet(t, ctx, bin, bin)
	pids := recordedPIDs(t, filepath.Join(f.agent.data, "runtime", "pids"))
	if len(pids) != 2 {
		t.Fatalf("%d instances recorded on the agent, want 2", len(pids))
	}
	lbLoad := handoffLoad(ctx, f.srv.LBURL+"/", nil)
	defer lbLoad.Stop()
	nodeLoad := handoffLoad(ctx, f.nodeURL, nil)
	defer nodeLoad.Stop()
	for _, l := range []*testenv.Load{lbLoad, nodeLoad} {
		if err := l.WaitOK(ctx, 200); err != nil {
			t.Fatal(err)
		}
	}

	mark, nodeMark := f.srv.Mark(), f.node.Mark()
	p2, err := testenv.StartServer(ctx, exec.Command(bin, "server", "-c", f.cfg), f.data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p2.Close()
		if t.Failed() {
			t.Logf("output of the new shoal server:\n%s", p2.Output())
		}
	})
	if p2.AdminURL != f.srv.AdminURL || p2.FleetURL != f.srv.FleetURL || p2.LBURL != f.srv.LBURL {
		t.Fatalf("the new server serves admin %s fleet %s balancer %s; the old one %s %s %s",
			p2.AdminURL, p2.FleetURL, p2.LBURL, f.srv.AdminURL, f.srv.FleetURL, f.srv.LBURL)
	}
	if _, err := p2.WaitForLine(ctx, regexp.MustCompile(`msg="took over" old_pid=\d+`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.srv.WaitForLineFrom(ctx, mark, regexp.MustCompile(`msg="handed over; draining"`)); err != nil {
		t.Fatal(err)
	}
	if code, err := f.srv.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("old server exit: %d %v", code, err)
	}
	for _, l := range []*testenv.Load{lbLoad, nodeLoad} {
		if err := l.WaitOK(ctx, 200); err != nil {
			t.Fatal(err)
		}
	}
	lbLoad.Stop()
	nodeLoad.Stop()
	lbLoad.Check(t, "load through the server's balancer")
	nodeLoad.Check(t, "load through the balancer node")
	f.checkAfterHandoff(t, ctx, pids, nodeMark)
	stopClean(t, ctx, p2.Process, "new server")
}

// TestServerUpgradeOnSIGUSR2: SIGUSR2 makes `shoal server` start its
// binary again from the file now on disk (replaced by a rename, as a
// package upgrade does), which takes over under load with no failed
// request; the old process exits 0.
func TestServerUpgradeOnSIGUSR2(t *testing.T) {
	bin := testenv.BuildShoal(t)
	ctx := testenv.Context(t, 6*time.Minute)
	exe := filepath.Join(t.TempDir(), "shoal")
	copyExe := func(dst, trailer string) {
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		// Bytes after the ELF image change the file, not the program.
		if err := os.WriteFile(dst, append(b, trailer...), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyExe(exe, "")
	f := startHandoffFleet(t, ctx, bin, exe)
	pids := recordedPIDs(t, filepath.Join(f.agent.data, "runtime", "pids"))
	load := handoffLoad(ctx, f.srv.LBURL+"/", nil)
	defer load.Stop()
	if err := load.WaitOK(ctx, 200); err != nil {
		t.Fatal(err)
	}

	copyExe(exe+".new", "\x00replaced")
	if err := os.Rename(exe+".new", exe); err != nil {
		t.Fatal(err)
	}
	mark, nodeMark := f.srv.Mark(), f.node.Mark()
	oldPID := f.srv.Cmd.Process.Pid
	if err := f.srv.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	// The new process writes to the old one's output.
	m, _, err := f.srv.WaitForLineFrom(ctx, mark, regexp.MustCompile(fmt.Sprintf(`msg="took over" old_pid=%d pid=(\d+)`, oldPID)))
	if err != nil {
		t.Fatal(err)
	}
	newPID, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { syscall.Kill(newPID, syscall.SIGKILL) })
	if got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", newPID)); err != nil || got != exe {
		t.Fatalf("the new process runs %q (%v), want the replaced %s", got, err, exe)
	}
	if _, _, err := f.srv.WaitForLineFrom(ctx, mark, testenv.ServerReady); err != nil {
		t.Fatal(err)
	}
	// f.srv.Wait would also wait for its output, which the new process
	// still writes to.
	if err := testenv.WaitFor(ctx, func() error {
		if !f.srv.Exited() {
			return errors.New("the old process runs")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code := f.srv.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("old server exit: %d", code)
	}
	if err := load.WaitOK(ctx, 200); err != nil {
		t.Fatal(err)
	}
	load.Stop()
	load.Check(t, "load through the server's balancer")
	f.checkAfterHandoff(t, ctx, pids, nodeMark)

	mark = f.srv.Mark()
	if err := syscall.Kill(newPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.srv.WaitForLineFrom(ctx, mark, regexp.MustCompile(`shoal server: stopped`)); err != nil {
		t.Fatal(err)
	}
	// The output ends once the new process exited.
	if _, err := f.srv.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}
