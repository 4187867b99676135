package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	dockerclient "github.com/docker/docker/client"

	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// dockerEngine returns a client of the Docker engine shoal up will use
// (DOCKER_HOST, else /var/run/docker.sock), or skips the test when none
// answers, unless SHOAL_REQUIRE_DOCKER=1 (.ci/run starts dockerd and sets
// it), where that fails the test.
func dockerEngine(t *testing.T) *dockerclient.Client {
	t.Helper()
	cli, err := dockerrt.Connect(context.Background(), 5*time.Second)
	if errors.Is(err, dockerrt.ErrNoEngine) {
		if os.Getenv("SHOAL_REQUIRE_DOCKER") == "1" {
			t.Fatalf("SHOAL_REQUIRE_DOCKER=1 and %v", err)
		}
		t.Skipf("skipped: %v (start dockerd, or set DOCKER_HOST)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// scopeContainers lists the containers of the shoal up of app folder dir.
func scopeContainers(t *testing.T, cli *dockerclient.Client, dir string) []container.Summary {
	t.Helper()
	return containersOf(t, cli, filepath.Join(dir, ".shoal"))
}

// containersOf lists the containers of an engine scope (a data directory).
func containersOf(t *testing.T, cli *dockerclient.Client, scope string) []container.Summary {
	t.Helper()
	list, err := cli.ContainerList(testenv.Context(t, 30*time.Second), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", dockerrt.LabelScope+"="+scope))})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func running(list []container.Summary) []container.Summary {
	var out []container.Summary
	for _, c := range list {
		if c.State == "running" {
			out = append(out, c)
		}
	}
	return out
}

// removeLeftContainers removes, at the end of t, the containers of the
// shoal up of dir that a failed test (which kills shoal up) leaves.
func removeLeftContainers(t *testing.T, cli *dockerclient.Client, dir string) {
	removeScopeContainers(t, cli, filepath.Join(dir, ".shoal"))
}

// removeScopeContainers removes, at the end of t, the containers of an
// engine scope (a data directory).
func removeScopeContainers(t *testing.T, cli *dockerclient.Client, scope string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", dockerrt.LabelScope+"="+scope))})
		if err != nil {
			return
		}
		for _, c := range list {
			cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	})
}

// removeAppImages removes the images shoal built for app, at the end of t.
func removeAppImages(t *testing.T, cli *dockerclient.Client, app string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		imgs, err := cli.ImageList(ctx, imageListOptions(app))
		if err != nil {
			return
		}
		for _, im := range imgs {
			cli.ImageRemove(ctx, im.ID, imageRemoveOptions())
		}
	})
}

// versionOf checks a GET of the docker example: 200, and its body names
// the version that answered ("dockerapp v1 ..."), the label.
func versionOf(resp *http.Response, body []byte) (string, error) {
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	f := strings.Fields(string(body))
	if len(f) < 2 {
		return "", fmt.Errorf("answer %q names no version", body)
	}
	return f[1], nil
}

func setVersion(t *testing.T, dir, v string) {
	t.Helper()
	p := filepath.Join(dir, "main.go")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), `const version = "v1"`, `const version = "`+v+`"`, 1)
	if s == string(b) {
		t.Fatal("main.go has no version constant v1")
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDockerUpDeployRollbackAndKill runs examples/docker with shoal up:
// two containers from a FROM scratch image built through the engine; one
// killed under load is replaced; a new image is deployed and rolled back;
// not one GET fails. SIGTERM then leaves no container.
func TestDockerUpDeployRollbackAndKill(t *testing.T) {
	cli := dockerEngine(t)
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "docker", 2, 4)
	removeAppImages(t, cli, "dockerapp")
	removeLeftContainers(t, cli, dir)
	up := startUp(t, bin, dir)
	waitStatus(t, up.client, "2 in service", inService(2))
	first := running(scopeContainers(t, cli, dir))
	if len(first) != 2 {
		t.Fatalf("%d running containers, want 2", len(first))
	}
	for _, c := range first {
		if c.Labels[dockerrt.LabelApp] != "dockerapp" || c.Labels[dockerrt.LabelRelease] != "1" || c.Labels[dockerrt.LabelInstance] == "" {
			t.Errorf("labels %v", c.Labels)
		}
	}

	l := testenv.StartLoad(testenv.Context(t, 10*time.Minute), up.lbURL+"/", testenv.LoadOptions{Workers: 2, Check: versionOf})
	t.Cleanup(func() { l.Stop() })
	l.RequireFlowing(t, "v1", 50, 30*time.Second)

	// A container killed under load: replaced, and no GET fails.
	victim := first[0]
	if err := cli.ContainerKill(testenv.Context(t, 30*time.Second), victim.ID, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		rs := running(scopeContainers(t, cli, dir))
		if len(rs) != 2 {
			return fmt.Errorf("%d running containers", len(rs))
		}
		for _, c := range rs {
			if c.ID == victim.ID {
				return errors.New("the killed container runs")
			}
		}
		return nil
	})
	waitStatus(t, up.client, "2 in service after the kill", inService(2))
	l.RequireFlowing(t, "after the kill", 50, 30*time.Second)
	l.RequireNoFailure(t, "kill of a container")

	// v2: a new image, under load.
	setVersion(t, dir, "v2")
	code, out := runShoal(t, bin, dir, "deploy")
	if code != 0 || !strings.Contains(out, "deploy: v2 serves") || !strings.Contains(out, "built artifact") {
		t.Fatalf("shoal deploy v2: exit %d\n%s", code, out)
	}
	st := waitStatus(t, up.client, "v2 serving", inService(2))
	if st.Release != 2 {
		t.Fatalf("release %d, want 2", st.Release)
	}
	l.RequireFlowing(t, "v2", 50, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() error {
		if l.Labels()["v2"] == 0 {
			return errors.New("no GET answered by v2")
		}
		return nil
	})
	for _, c := range running(scopeContainers(t, cli, dir)) {
		if c.Labels[dockerrt.LabelRelease] != "2" {
			t.Errorf("container %s of release %s runs after the deploy of v2", c.ID[:12], c.Labels[dockerrt.LabelRelease])
		}
	}

	// Rollback to v1: its image, from its kept artifact, no build.
	code, out = runShoal(t, bin, dir, "rollback", "v1")
	if code != 0 || !strings.Contains(out, "rollback: v1 serves") || strings.Contains(out, "built artifact") {
		t.Fatalf("shoal rollback v1: exit %d\n%s", code, out)
	}
	waitStatus(t, up.client, "v1 serving", inService(2))
	v1s := l.Labels()["v1"]
	testenv.Eventually(t, 10*time.Second, func() error {
		if l.Labels()["v1"] == v1s {
			return errors.New("no GET answered by v1 after the rollback")
		}
		return nil
	})
	l.RequireNoFailure(t, "deploy and rollback")

	// Logs come from the engine.
	code, out = runShoal(t, bin, dir, "logs")
	if code != 0 || !strings.Contains(out, "dockerapp v1 listening") {
		t.Errorf("shoal logs: exit %d\n%s", code, out)
	}
	l.Stop()
	stopUp(t, up)
	if left := scopeContainers(t, cli, dir); len(left) != 0 {
		t.Errorf("%d containers left after SIGTERM of shoal up", len(left))
	}
}

// TestDockerUpSIGKILLThenStart: a SIGKILL of shoal up leaves its
// containers running (nothing could stop them); the next start removes
// them before it starts its own. Their logs come from the engine with the
// secrets redacted. The app ignores SIGTERM, so the final
// stop kills each container after run.stop_timeout.
func TestDockerUpSIGKILLThenStart(t *testing.T) {
	cli := dockerEngine(t)
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "docker", 1, 2)
	removeAppImages(t, cli, "dockerapp")
	removeLeftContainers(t, cli, dir)
	editYAML(t, dir, func(doc map[string]any) {
		run := doc["run"].(map[string]any)
		run["env"].(map[string]any)["IGNORE_TERM"] = "1"
		run["stop_timeout"] = "2s"
		run["secrets_file"] = "secrets.env"
	})
	// A secret whose value the app prints: shoal logs, read from the
	// engine, must show it redacted.
	if err := os.WriteFile(filepath.Join(dir, "secrets.env"), []byte("SHOUT=listening on\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := startUp(t, bin, dir)
	waitStatus(t, up.client, "1 in service", inService(1))
	before := running(scopeContainers(t, cli, dir))
	if len(before) != 1 {
		t.Fatalf("%d running containers, want 1", len(before))
	}
	if err := up.p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	up.p.Wait(testenv.Context(t, 30*time.Second))
	if rs := running(scopeContainers(t, cli, dir)); len(rs) != 1 || rs[0].ID != before[0].ID {
		t.Fatalf("after SIGKILL of shoal up: %d running containers", len(rs))
	}

	up2 := startUp(t, bin, dir)
	waitStatus(t, up2.client, "1 in service after the restart", inService(1))
	all := scopeContainers(t, cli, dir)
	for _, c := range all {
		if c.ID == before[0].ID {
			t.Fatalf("the container of the killed shoal up is still there (%s)", c.State)
		}
	}
	if rs := running(all); len(rs) != 1 {
		t.Fatalf("%d running containers after the restart, want 1", len(rs))
	}
	code, out := runShoal(t, bin, dir, "logs")
	if code != 0 || strings.Contains(out, "listening on") || !strings.Contains(out, "dockerapp v1 [redacted]") {
		t.Errorf("shoal logs: exit %d, want the secret redacted\n%s", code, out)
	}
	start := time.Now()
	stopUp(t, up2)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("shoal up stopped in %s: a container that ignores SIGTERM must hold it for stop_timeout (2s)", took)
	}
	if left := scopeContainers(t, cli, dir); len(left) != 0 {
		t.Errorf("%d containers left after SIGTERM of shoal up", len(left))
	}
	if !strings.Contains(up2.p.Output(), "container killed after its stop timeout") {
		t.Errorf("no kill after the stop timeout in the output:\n%s", up2.p.Output())
	}
}

func imageListOptions(app string) image.ListOptions {
	return image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", dockerrt.LabelApp+"="+app))}
}

func imageRemoveOptions() image.RemoveOptions {
	return image.RemoveOptions{Force: true, PruneChildren: true}
}
