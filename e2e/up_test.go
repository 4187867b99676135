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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func waitStatus(t *testing.T, c *client.Client, what string, fn func(client.Status) error) client.Status {
	t.Helper()
	ctx := testenv.Context(t, 60*time.Second)
	var st client.Status
	err := testenv.WaitFor(ctx, func() error {
		var err error
		if st, err = c.Status(ctx); err != nil {
			return err
		}
		return fn(st)
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v\nlast status: %+v", what, err, st)
	}
	return st
}

func inService(n int) func(client.Status) error {
	return func(st client.Status) error {
		if st.InService != n || len(st.Instances) != n {
			return fmt.Errorf("%d in service of %d instances, want %d", st.InService, len(st.Instances), n)
		}
		return nil
	}
}

func without(id string, n int) func(client.Status) error {
	return func(st client.Status) error {
		if err := inService(n)(st); err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.ID == id {
				return fmt.Errorf("instance %s still %s", id, in.State)
			}
		}
		return nil
	}
}

func pidsOf(st client.Status) []int {
	var pids []int
	for _, in := range st.Instances {
		if in.PID > 0 {
			pids = append(pids, in.PID)
		}
	}
	return pids
}

// TestUpSelfHealing runs `shoal up` on the meteor-like example and checks
// serving, kill -9 under load with zero failed requests, replacement of an
// unhealthy instance, the client verbs, and a SIGKILL + restart that comes
// back to the stored state without stray processes.
func TestUpSelfHealing(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 2, 4)
	up := startUp(t, bin, dir)
	if up.release != "1" {
		t.Fatalf("first release is v%s, want v1", up.release)
	}
	resp, err := http.Get(up.lbURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET through the balancer: %s", resp.Status)
	}
	st := waitStatus(t, up.client, "2 in service", inService(2))

	// kill -9 under steady load: no failed GET, and a replacement.
	l := testenv.StartLoad(testenv.Context(t, 5*time.Minute), up.lbURL+"/", testenv.LoadOptions{Max: 50000})
	t.Cleanup(func() { l.Stop() })
	// Each wait below gets its own deadline, so a slow machine does not
	// make a later step inherit an earlier step's spent budget.
	step := func() context.Context { return testenv.Context(t, 45*time.Second) }
	if err := testenv.WaitFor(step(), func() error {
		if l.OK() < 50 {
			return errors.New("load not flowing yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	victim := st.Instances[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, up.client, "replacement after kill -9", without(victim.ID, 2))
	if err := l.WaitOK(step(), 100); err != nil {
		t.Errorf("after the replacement: %v", err)
	}
	l.Stop()
	l.Check(t, "kill -9 under load")

	// An instance that turns unhealthy is replaced, then stopped.
	st = waitStatus(t, up.client, "2 in service", inService(2))
	sick := st.Instances[0]
	resp, err = http.Post("http://"+sick.Addr+"/admin/unhealthy", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitStatus(t, up.client, "unhealthy instance replaced", without(sick.ID, 2))
	if err := waitGone(step(), []int{sick.PID, victim.PID}); err != nil {
		t.Error(err)
	}

	// The client verbs.
	if code, out := runShoal(t, bin, dir, "scale", "3"); code != 0 {
		t.Fatalf("shoal scale 3: %d\n%s", code, out)
	}
	if code, out := runShoal(t, bin, dir, "scale", "99"); code != 2 || !strings.Contains(out, "between") {
		t.Errorf("shoal scale 99: exit %d, want 2 with a reason\n%s", code, out)
	}
	st = waitStatus(t, up.client, "3 in service", inService(3))
	code, out := runShoal(t, bin, dir, "status")
	if code != 0 || !strings.Contains(out, "in_service") || !strings.Contains(out, "3/3 in service") {
		t.Errorf("shoal status: %d\n%s", code, out)
	}
	// The load went through the balancer: the app's time beside the
	// client round trip, per route and listener (issue 17).
	if !strings.Contains(out, "RTT p50") || !regexp.MustCompile(`(?m)^\s+route \S+\s+\d+\s+[0-9.]+ ms\s+[0-9.]+ ms\s+[0-9.]+ ms\s+[0-9.]+ ms$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\s+listener \S+\s+\d+`).MatchString(out) {
		t.Errorf("shoal status lacks the route's and the listener's timing:\n%s", out)
	}
	code, out = runShoal(t, bin, dir, "events", "-n", "200")
	for _, want := range []string{"process killed by SIGKILL", "health checks in a row", "desired 2 -> 3"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("shoal events lacks %q (exit %d)\n%s", want, code, out)
		}
	}
	if code, out := runShoal(t, bin, dir, "releases"); code != 0 || !regexp.MustCompile(`v1 \*\s+active`).MatchString(out) {
		t.Errorf("shoal releases: %d\n%s", code, out)
	}
	// CI: the admin API from the environment, JSON out, in a folder
	// without shoal.yaml.
	tok, err := os.ReadFile(filepath.Join(dir, ".shoal", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	ci := exec.CommandContext(testenv.Context(t, 30*time.Second), bin, "status", "-o", "json")
	ci.Dir = t.TempDir()
	ci.Env = append(os.Environ(), "SHOAL_ADMIN_URL="+up.adminURL, "SHOAL_TOKEN="+strings.TrimSpace(string(tok)))
	var ciStatus client.Status
	if out, err := ci.Output(); err != nil || json.Unmarshal(out, &ciStatus) != nil || ciStatus.InService != 3 {
		t.Errorf("SHOAL_ADMIN_URL=... shoal status -o json: %v, %+v\n%s", err, ciStatus, out)
	}
	if len(ciStatus.Timing) == 0 || ciStatus.Timing[0].Kind != "route" || ciStatus.Timing[0].RTTSamples == 0 || ciStatus.Timing[0].RTTP50MS <= 0 {
		t.Errorf("shoal status -o json: timing %+v", ciStatus.Timing)
	}
	if code, out := runShoal(t, bin, dir, "logs", st.Instances[0].ID); code != 0 {
		t.Errorf("shoal logs: %d\n%s", code, out)
	}
	// Every route needs the token.
	req, _ := http.NewRequest("GET", up.adminURL+"/v1/status", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status without token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if fi, err := os.Stat(filepath.Join(dir, ".shoal", "admin.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v %v", fi, err)
	}

	// SIGKILL shoal: its instances die with it; a restart comes back to
	// release v1 with the scaled count, and no old process survives.
	old := pidsOf(st)
	if err := up.p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := up.p.Wait(step()); err != nil {
		t.Fatal(err)
	}
	if err := waitGone(step(), old); err != nil {
		t.Fatalf("instances outlived shoal: %v", err)
	}
	up2 := startUp(t, bin, dir)
	if up2.release != "1" {
		t.Errorf("after restart: release v%s, want v1", up2.release)
	}
	st = waitStatus(t, up2.client, "3 in service after restart", inService(3))
	if st.Desired != 3 {
		t.Errorf("after restart: desired %d, want 3", st.Desired)
	}
	for _, in := range st.Instances {
		for _, pid := range old {
			if in.PID == pid {
				t.Errorf("instance pid %d reused from the killed run", pid)
			}
		}
	}

	// ctrl-C drains and stops everything, exit 0.
	now := pidsOf(st)
	up2.p.Signal(syscall.SIGINT)
	exit, err := up2.p.Wait(step())
	if err != nil || exit != 0 {
		t.Errorf("shoal up after SIGINT: exit %d, %v\n%s", exit, err, up2.p.Output())
	}
	if err := waitGone(step(), now); err != nil {
		t.Error(err)
	}
}

// TestUpBadConfig checks that a bad shoal.yaml is reported with
// file:line:column, exits 2 and starts nothing.
func TestUpBadConfig(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := t.TempDir()
	bad := "app: web\nrun:\n  command: node server.js\ngroup:\n  min: 3\n  max: 1\n  desird: 2\nbalancer:\n  listen: 127.0.0.1:0\n"
	if err := os.WriteFile(filepath.Join(dir, "shoal.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runShoal(t, bin, dir, "up")
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, out)
	}
	if !regexp.MustCompile(`shoal\.yaml:7:3`).MatchString(out) {
		t.Errorf("no line:column for the unknown field:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, ".shoal")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a bad config created the data dir: %v", err)
	}
}
