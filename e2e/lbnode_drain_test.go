package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestLBNodeDrainsBeforeStop runs `shoal server`, one agent and a
// balancer node, with GET load through the node while the app scales in
// from 3 instances to 1 and out again, three times: no GET fails. The app
// (testdata/abruptapp) ends at SIGTERM at once and answers GET / in two
// parts 100 ms apart, so a GET that a node still has in flight to an
// instance the server stops fails (a balancer cannot retry a response
// it has begun). The server stops an instance only once the node has
// applied a configuration in which it drains and has finished its
// requests to it ("drain before stop" through balancer nodes;
// docs/ARCHITECTURE.md "Balancer nodes").
func TestLBNodeDrainsBeforeStop(t *testing.T) {
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "goapp", 3, 4)
	abrupt, err := os.ReadFile(filepath.Join("testdata", "abruptapp", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), abrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 6*time.Minute)
	srv := startLoopbackServer(t, ctx, bin)
	env := append(os.Environ(), "SHOAL_ADMIN_URL="+srv.AdminURL, "SHOAL_TOKEN="+srv.Token)
	newServerAgent(t, srv.FleetURL, "host-a", joinTokenOf(t, bin, env, "agent")).start(t, bin)
	deployFirst(t, ctx, bin, app, env)

	node, lbURL := startLBNode(t, ctx, bin, writeLBNode(t, srv.FleetURL, "lb-1", joinTokenOf(t, bin, env, "lb")))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of shoal lb:\n%s", node.Output())
		}
	})
	waitServes(t, lbURL)

	c := client.New(srv.AdminURL, srv.Token)
	waitInService := func(n int) {
		t.Helper()
		testenv.Eventually(t, 90*time.Second, func() error {
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			return inService(n)(st)
		})
	}
	waitInService(3)
	load := testenv.StartLoad(ctx, lbURL, testenv.LoadOptions{Workers: 4})
	defer load.Stop()
	load.RequireFlowing(t, "through the balancer node", 50, 20*time.Second)
	for round := range 3 {
		if err := scaleTo(ctx, c, 1); err != nil {
			t.Fatalf("round %d: scale to 1: %v", round, err)
		}
		waitInService(1)
		load.RequireFlowing(t, fmt.Sprintf("round %d: with one instance", round), 50, 20*time.Second)
		if err := scaleTo(ctx, c, 3); err != nil {
			t.Fatalf("round %d: scale to 3: %v", round, err)
		}
		waitInService(3)
		load.RequireFlowing(t, fmt.Sprintf("round %d: with three instances", round), 50, 20*time.Second)
	}
	load.Stop()
	load.Check(t, "GETs through the balancer node while scaling in and out")
}
