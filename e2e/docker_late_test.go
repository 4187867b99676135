package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerclient "github.com/docker/docker/client"

	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// fleetCLI returns a function that runs a shoal verb against srv's admin
// API in folder dir and fails the test when it fails. Not runShoalEnv's
// bound: a deploy builds the app and its image, which takes minutes on a
// loaded 2-core machine.
func fleetCLI(t *testing.T, bin string, srv *testenv.Server) func(dir string, args ...string) string {
	env := append(os.Environ(), "SHOAL_ADMIN_URL="+srv.AdminURL, "SHOAL_TOKEN="+srv.Token)
	return func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(testenv.Context(t, 4*time.Minute), bin, args...)
		cmd.Dir, cmd.Env = dir, env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if d := time.Since(start); d > 2*time.Second {
			t.Logf("shoal %s: %.1fs", strings.Join(args, " "), d.Seconds()) // where a test's time goes
		}
		if err != nil {
			t.Fatalf("shoal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

// startDockerd starts a Docker engine of the test's own, its state in dir
// (testenv.StartDockerd), and returns a client of it. At the end of the
// test its containers are removed and it is stopped.
func startDockerd(t *testing.T, ctx context.Context, dir string) *dockerclient.Client {
	t.Helper()
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Skip("no dockerd")
	}
	var cli *dockerclient.Client
	host, stop, err := testenv.StartDockerd(ctx, dir, func(ctx context.Context, host string) error {
		c, err := dockerrt.ConnectTo(ctx, host, 5*time.Second)
		if err == nil {
			cli = c
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		list, _ := cli.ContainerList(cctx, container.ListOptions{All: true})
		for _, c := range list {
			cli.ContainerRemove(cctx, c.ID, container.RemoveOptions{Force: true})
		}
		cancel()
		cli.Close()
		stop()
	})
	t.Logf("own engine at %s", host)
	return cli
}

// TestDockerFleetAgentEngineStartsLate starts an agent whose Docker engine
// is not running yet (its docker_host names a socket nobody serves) beside
// one on the shared engine. A deploy places the containers on the second
// host (the first refuses them: an event says so). Then the first host's
// dockerd starts: the agent, which tried the engine again with backoff
// and logged the failure once, takes it, the server says the host runs
// containers again, and a scale-up places a container there (it has the
// most memory): the host fetches the image's layer and loads it into its
// fresh engine.
func TestDockerFleetAgentEngineStartsLate(t *testing.T) {
	cli := dockerEngine(t)
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "docker", 1, 4)
	removeAppImages(t, cli, "dockerapp")
	ctx := testenv.Context(t, 8*time.Minute)
	srv := startLoopbackServer(t, ctx, bin)
	shoal := fleetCLI(t, bin, srv)
	dir := t.TempDir()
	token := func() string { return strings.TrimSpace(shoal(dir, "join-token", "--ttl", "10m")) }

	engDir, err := os.MkdirTemp("/tmp", "shoal-late-")
	if err != nil {
		t.Fatal(err)
	}
	late := newServerAgent(t, srv.FleetURL, "host-late", token())
	f, err := os.OpenFile(late.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "docker_host: unix://%s/docker.sock\nmemory: 512GiB\n", engDir)
	f.Close()
	other := newServerAgent(t, srv.FleetURL, "host-b", token())
	removeScopeContainers(t, cli, other.data)
	pLate := late.start(t, bin)
	other.start(t, bin)
	testenv.Eventually(t, 30*time.Second, func() error {
		if out := shoal(dir, "hosts"); strings.Count(out, "ready") != 2 {
			return errors.New(out)
		}
		return nil
	})
	if out := shoal(app, "deploy"); !strings.Contains(out, "deploy: v1 serves") {
		t.Fatalf("shoal deploy: %s", out)
	}
	if out := shoal(dir, "hosts", "events"); !strings.Contains(out, "host host-late runs no containers") {
		t.Fatalf("no event of host-late refusing containers:\n%s", out)
	}

	lateCli := startDockerd(t, ctx, engDir)
	if _, err := pLate.WaitForLine(ctx, regexp.MustCompile(`docker engine ready`)); err != nil {
		t.Fatalf("the agent did not take its engine: %v\n%s", err, pLate.Output())
	}
	testenv.Eventually(t, time.Minute, func() error {
		if out := shoal(dir, "hosts", "events"); !strings.Contains(out, "host host-late runs containers again") {
			return errors.New(out)
		}
		return nil
	})
	shoal(app, "scale", "2")
	testenv.Eventually(t, 2*time.Minute, func() error {
		if n := len(running(containersOf(t, lateCli, late.data))); n != 1 {
			return fmt.Errorf("%d containers run on host-late's engine", n)
		}
		if out := shoal(dir, "status", "--app", "dockerapp"); !strings.Contains(out, "release v1, 2/2 in service") {
			return errors.New(out)
		}
		return nil
	})
	out := pLate.Output()
	// The image artifact and its one layer (examples/docker is FROM
	// scratch), each fetched once, then loaded.
	if n := strings.Count(out, "artifact fetched"); n != 2 || !strings.Contains(out, "image loaded") {
		t.Errorf("host-late fetched %d artifacts, want 2 (the image and its layer), and loaded the image:\n%s", n, out)
	}
	// Bounded noise: the first failure, and one more when its reason changed.
	if n := strings.Count(out, "docker engine still unusable"); n > 2 {
		t.Errorf("%d lines about the engine's retries, want at most 2:\n%s", n, out)
	}
}
