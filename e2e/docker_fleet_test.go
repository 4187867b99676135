package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestDockerFleetDeployRollbackKillAndAdopt runs examples/docker on a
// fleet on loopback: `shoal server`, two agents on one shared Docker engine
// (each its own scope: its data directory) and a third with
// docker_host: none. `shoal deploy` builds the image where the CLI runs
// and ships the saved image as the artifact; the agents fetch it by digest
// and run the instances as containers. The agent without an engine refuses
// (an event says so) and the instances go to the other two. Under load,
// with not one failed GET: a container is killed and replaced, v2 is
// deployed, v1 rolled back to, and one agent is SIGKILLed and started
// again: it adopts its running container, and the other agent's container
// on the same engine is left alone.
func TestDockerFleetDeployRollbackKillAndAdopt(t *testing.T) {
	cli := dockerEngine(t)
	bin := testenv.BuildShoal(t)
	app := exampleApp(t, "docker", 2, 4)
	removeAppImages(t, cli, "dockerapp")
	ctx := testenv.Context(t, 8*time.Minute)
	srv := startLoopbackServer(t, ctx, bin)
	dir := t.TempDir()
	shoal := fleetCLI(t, bin, srv)
	token := func() string { return strings.TrimSpace(shoal(dir, "join-token", "--ttl", "10m")) }

	agents := map[string]*agentHost{}
	procs := map[string]*testenv.Process{}
	for _, name := range []string{"host-a", "host-b", "host-c"} {
		h := newServerAgent(t, srv.FleetURL, name, token())
		if name == "host-c" {
			// No engine, and the most memory: placement tries it first.
			f, err := os.OpenFile(h.cfg, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(f, "docker_host: none\nmemory: 512GiB\n")
			f.Close()
		}
		removeScopeContainers(t, cli, h.data) // they outlive agents by design
		agents[name] = h
		procs[name] = h.start(t, bin)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		out := shoal(dir, "hosts")
		if n := strings.Count(out, "ready"); n != 3 {
			return fmt.Errorf("%d hosts ready:\n%s", n, out)
		}
		return nil
	})

	out := shoal(app, "deploy")
	if !strings.Contains(out, "deploy: v1 serves") {
		t.Fatalf("shoal deploy: %s", out)
	}
	serving := func(rel string) func() error {
		return func() error {
			out := shoal(dir, "status", "--app", "dockerapp")
			if !strings.Contains(out, "release "+rel+", 2/2 in service") {
				return errors.New(out)
			}
			return nil
		}
	}
	testenv.Eventually(t, time.Minute, serving("v1"))
	if out := shoal(dir, "hosts", "events"); !strings.Contains(out, "host host-c runs no containers") ||
		!strings.Contains(out, "docker_host is none") {
		t.Errorf("no event of host-c refusing containers:\n%s", out)
	}
	perHost := func() map[string][]container.Summary {
		m := map[string][]container.Summary{}
		for name, h := range agents {
			m[name] = running(containersOf(t, cli, h.data))
		}
		return m
	}
	first := perHost()
	if len(first["host-a"]) != 1 || len(first["host-b"]) != 1 || len(first["host-c"]) != 0 {
		t.Fatalf("running containers per host: a %d, b %d, c %d; want 1, 1, 0", len(first["host-a"]), len(first["host-b"]), len(first["host-c"]))
	}
	for _, c := range append(first["host-a"], first["host-b"]...) {
		if c.Labels[dockerrt.LabelApp] != "dockerapp" || c.Labels[dockerrt.LabelRelease] != "1" || c.Labels[dockerrt.LabelInstance] == "" {
			t.Errorf("labels %v", c.Labels)
		}
	}

	l := testenv.StartLoad(testenv.Context(t, 10*time.Minute), srv.LBURL+"/", testenv.LoadOptions{Workers: 2, Check: versionOf})
	t.Cleanup(func() { l.Stop() })
	l.RequireFlowing(t, "v1", 50, 30*time.Second)

	// A container killed under load is replaced.
	victim := first["host-a"][0]
	if err := cli.ContainerKill(testenv.Context(t, 30*time.Second), victim.ID, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() error {
		n := 0
		for _, cs := range perHost() {
			for _, c := range cs {
				if c.ID == victim.ID {
					return errors.New("the killed container runs")
				}
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d running containers", n)
		}
		return nil
	})
	testenv.Eventually(t, time.Minute, serving("v1"))
	l.RequireFlowing(t, "after the kill", 50, 30*time.Second)
	l.RequireNoFailure(t, "kill of a container")

	// v2: a new image, shipped to the hosts, under load.
	setVersion(t, app, "v2")
	if out := shoal(app, "deploy"); !strings.Contains(out, "deploy: v2 serves") || !strings.Contains(out, "built artifact") {
		t.Fatalf("shoal deploy v2: %s", out)
	}
	testenv.Eventually(t, time.Minute, serving("v2"))
	testenv.Eventually(t, 20*time.Second, func() error {
		if l.Labels()["v2"] == 0 {
			return errors.New("no GET answered by v2")
		}
		return nil
	})
	// Rollback to v1: its image is still on the engine; no build.
	if out := shoal(app, "rollback", "v1"); !strings.Contains(out, "rollback: v1 serves") || strings.Contains(out, "built artifact") {
		t.Fatalf("shoal rollback v1: %s", out)
	}
	testenv.Eventually(t, time.Minute, serving("v1"))
	v1s := l.Labels()["v1"]
	testenv.Eventually(t, 20*time.Second, func() error {
		if l.Labels()["v1"] == v1s {
			return errors.New("no GET answered by v1 after the rollback")
		}
		return nil
	})
	l.RequireNoFailure(t, "deploy and rollback")

	// SIGKILL of an agent that runs a container, then a new start: it
	// adopts its running containers; every other container on the same
	// engine is untouched. (The rollout may have left both instances on one
	// host.)
	before := perHost()
	victimHost := "host-a"
	if len(before["host-b"]) > len(before["host-a"]) {
		victimHost = "host-b"
	}
	if err := procs[victimHost].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	procs[victimHost].Wait(ctx)
	p := agents[victimHost].start(t, bin)
	if _, err := p.WaitForLine(ctx, adoptedContainerRe); err != nil {
		t.Fatalf("the restarted agent adopted no container: %v\n%s", err, p.Output())
	}
	after := perHost()
	for _, name := range []string{"host-a", "host-b"} {
		if ids(after[name]) != ids(before[name]) {
			t.Errorf("%s: running containers %s before the restart of %s's agent, %s after", name, ids(before[name]), victimHost, ids(after[name]))
		}
	}
	l.RequireFlowing(t, "after the agent's restart", 50, 30*time.Second)
	testenv.Eventually(t, time.Minute, serving("v1"))
	// The adopted container is still the server's: stopping the group's
	// instances through a deploy replaces it.
	mainGo := filepath.Join(app, "main.go")
	b, err := os.ReadFile(mainGo)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mainGo, []byte(strings.Replace(string(b), `const version = "v2"`, `const version = "v3"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := shoal(app, "deploy"); !strings.Contains(out, "deploy: v3 serves") {
		t.Fatalf("shoal deploy v3: %s", out)
	}
	testenv.Eventually(t, time.Minute, serving("v3"))
	testenv.Eventually(t, 30*time.Second, func() error {
		for name, cs := range perHost() {
			for _, c := range cs {
				if c.Labels[dockerrt.LabelRelease] != "3" {
					return fmt.Errorf("%s runs a container of release %s", name, c.Labels[dockerrt.LabelRelease])
				}
			}
		}
		return nil
	})
	l.RequireNoFailure(t, "restart of an agent and a deploy")
	if out := shoal(dir, "logs", "--app", "dockerapp"); !strings.Contains(out, "dockerapp v3 listening") {
		t.Errorf("shoal logs: %s", out)
	}
	// Exited containers an agent kept for their logs are its own: none is
	// another scope's, and nothing is left on host-c.
	if cs := containersOf(t, cli, agents["host-c"].data); len(cs) != 0 {
		t.Errorf("%d containers of host-c, which has no engine", len(cs))
	}
}

// ids lists the containers' IDs, sorted.
func ids(cs []container.Summary) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID[:12])
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

var adoptedContainerRe = regexp.MustCompile(`container adopted`)
