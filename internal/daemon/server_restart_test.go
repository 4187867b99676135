package daemon

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestServerReopensAnAppWhoseFirstDeployWasCut: a server stopped while
// an app's first deploy rolls out (its instance never becomes healthy)
// reopens the app at its next start with no release, v1 shown failed in
// its releases and in the dashboard's; the app's next deploy makes v2 and
// serves it.
func TestServerReopensAnAppWhoseFirstDeployWasCut(t *testing.T) {
	dir := t.TempDir()
	agents := &agentSet{}
	t.Cleanup(agents.stop)
	ts := startServer(t, serverConfig(t, dir, "127.0.0.1:0"))
	agents.startAgent(t, ts, "host-a")
	ctx := testenv.Context(t, 2*time.Minute)
	waitHostsReady(t, ctx, ts, "host-a")

	// An instance that never listens: the rollout waits for its health.
	good := appYAML(t, "web")
	hung := good[:strings.Index(good, "run:\n")] + "run:\n  command: sleep 300\n  stop_timeout: 1s\n" +
		good[strings.Index(good, "health:"):]
	hung = strings.Replace(hung, "group: {min: 0, max: 2, desired: 1}\n", "group: {min: 0, max: 2, desired: 1}\ndeploy: {batch_timeout: 5m}\n", 1)
	c := ts.client(t, "web")
	digest, gz := agenttest.Artifact(t, map[string]string{"version.txt": "web-1\n"})
	if err := c.UploadArtifact(ctx, digest, bytes.NewReader(gz), int64(len(gz))); err != nil {
		t.Fatal(err)
	}
	deployed := make(chan error, 1)
	go func() {
		res, err := c.Deploy(ctx, client.DeployOptions{Config: hung, ConfigFile: "/home/dev/web/shoal.yaml", Digest: digest}, nil)
		switch {
		case err != nil:
			deployed <- nil // the answer was cut with the connection
		case res.OK || !strings.Contains(res.Error, "stopped during the first deploy"):
			deployed <- fmt.Errorf("the cut deploy answered %+v; want it not OK, saying the server stopped during the first deploy", res)
		default:
			deployed <- nil
		}
	}()
	testenv.Eventually(t, 60*time.Second, func() error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if len(st.Instances) == 0 || st.Instances[0].PID == 0 {
			return fmt.Errorf("v1's instance not started yet: %+v", st.Instances)
		}
		return nil
	})

	fleetAddr := ts.s.FleetAddr().String()
	ts.stop()
	if err := <-deployed; err != nil {
		t.Fatal(err)
	}
	ts = startServer(t, serverConfig(t, dir, fleetAddr))
	if ts.ready.Apps != 1 {
		t.Fatalf("reopened %d apps, want web", ts.ready.Apps)
	}
	c = ts.client(t, "web")
	testenv.Eventually(t, 30*time.Second, func() error {
		rels, err := c.Releases(ctx)
		if err != nil {
			return err
		}
		if len(rels) != 1 || rels[0].Version != 1 || rels[0].Status != api.ReleaseFailed || rels[0].Current {
			return fmt.Errorf("releases after the restart: %+v, want v1 failed", rels)
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Release != 0 || len(st.Instances) != 0 {
			return fmt.Errorf("status after the restart: release v%d, instances %+v; want none", st.Release, st.Instances)
		}
		return nil
	})
	dash := dashboardLogin(t, ctx, ts.ready.AdminURL, ts.token)
	if code, body := page(t, ctx, dash, ts.ready.AdminURL, "/ui/releases"); code != 200 || !strings.Contains(body, `id="releases-web"`) ||
		!strings.Contains(body, "failed") {
		t.Errorf("the dashboard's releases: %d, want web's v1 failed:\n%s", code, body)
	}

	res, err := deployApp(t, ctx, c, good, "web-2")
	if err != nil || !res.OK || res.Version != 2 {
		t.Fatalf("the next deploy: %+v, %v; want v2", res, err)
	}
	if v, err := getVersion(ctx, ts.s.Addr().String(), "any.test"); err != nil || v != "web-2" {
		t.Fatalf("after the next deploy: %q, %v", v, err)
	}
}

// poolAlgorithm is the algorithm the balancer's pool of app runs with.
func poolAlgorithm(t *testing.T, ts *testServer, app string) string {
	t.Helper()
	for _, p := range ts.s.bal.Status().Pools {
		if p.Name == app {
			return p.Algorithm
		}
	}
	t.Fatalf("no pool %s", app)
	return ""
}

// TestServerBalancerSettingsApplyAtRestart: a deploy that changes the
// app's balancer algorithm goes live and says, in an event of the app,
// that the running pool keeps its settings until the server restarts;
// the restart builds the pool with the new algorithm.
func TestServerBalancerSettingsApplyAtRestart(t *testing.T) {
	dir := t.TempDir()
	agents := &agentSet{}
	t.Cleanup(agents.stop)
	ts := startServer(t, serverConfig(t, dir, "127.0.0.1:0"))
	agents.startAgent(t, ts, "host-a")
	ctx := testenv.Context(t, 2*time.Minute)
	waitHostsReady(t, ctx, ts, "host-a")
	c := ts.client(t, "web")
	v1 := appYAML(t, "web")
	if res, err := deployApp(t, ctx, c, v1, "web-1"); err != nil || !res.OK {
		t.Fatalf("deploy v1: %+v, %v", res, err)
	}
	v2 := strings.Replace(v1, "balancer:\n", "balancer:\n  algorithm: least_requests\n", 1)
	if res, err := deployApp(t, ctx, c, v2, "web-2"); err != nil || !res.OK || res.Version != 2 {
		t.Fatalf("deploy v2: %+v, %v", res, err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		evs, err := c.Events(ctx, 0, 1000)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == "balancer" && e.Release == 2 && strings.Contains(e.Reason, "v2 changes balancer algorithm") &&
				strings.Contains(e.Reason, "until shoal server restarts") {
				return nil
			}
		}
		return fmt.Errorf("no event says v2's algorithm waits for a restart: %+v", evs)
	})
	if got := poolAlgorithm(t, ts, "web"); got != "round_robin" {
		t.Fatalf("the running pool's algorithm: %s, want round_robin kept", got)
	}
	if v, err := getVersion(ctx, ts.s.Addr().String(), "any.test"); err != nil || v != "web-2" {
		t.Fatalf("v2 not served: %q, %v", v, err)
	}

	fleetAddr := ts.s.FleetAddr().String()
	ts.stop()
	ts = startServer(t, serverConfig(t, dir, fleetAddr))
	if got := poolAlgorithm(t, ts, "web"); got != "least_requests" {
		t.Fatalf("after the restart the pool's algorithm is %s, want least_requests", got)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if v, err := getVersion(ctx, ts.s.Addr().String(), "any.test"); err != nil || v != "web-2" {
			return fmt.Errorf("after the restart: %q, %v", v, err)
		}
		return nil
	})
}
