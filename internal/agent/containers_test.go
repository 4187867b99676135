package agent_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestContainerWithoutEngineRefused: an agent with no Docker engine
// answers a container instance 501 (agentclient.ErrUnsupported, which the
// fleet takes as "place it elsewhere") naming the host and why, fetches
// nothing and runs nothing; a runtime it does not know, or a container
// port on a process, is a 400 naming the field.
func TestContainerWithoutEngineRefused(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, time.Minute)
	digest, b := agenttest.Artifact(t, map[string]string{"x": "y"})
	f.Artifacts.Set(digest, b)

	spec := launch(t, "web-1", digest)
	spec.Runtime, spec.Command, spec.Port = "docker", "", 3000
	_, err := f.Client.Start(ctx, 1, spec)
	var se *agentclient.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusNotImplemented || !errors.Is(err, agentclient.ErrUnsupported) ||
		!strings.Contains(se.Message, "no docker engine on host") {
		t.Fatalf("container start on an agent without an engine: %v; want 501 naming the missing engine", err)
	}
	if n := f.Artifacts.Fetches(digest); n != 0 {
		t.Errorf("%d fetches of the artifact; want none", n)
	}
	if list, err := f.Client.List(ctx); err != nil || len(list.Instances) != 0 {
		t.Errorf("list = %+v, %v; want nothing running", list, err)
	}

	for _, c := range []struct {
		runtime string
		port    int
		want    string
	}{
		{"podman", 0, `runtime "podman"`},
		{"", 3000, "port 3000: only with runtime"},
		{"docker", 70000, "port 70000: want 0 to 65535"},
	} {
		spec := launch(t, "web-2", digest)
		spec.Runtime, spec.Port = c.runtime, c.port
		_, err := f.Client.Start(ctx, 1, spec)
		if !errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(se.Message, c.want) {
			t.Errorf("runtime %q port %d: %v; want 400 with %q", c.runtime, c.port, err, c.want)
		}
	}
}

// TestSetDockerLate: an agent started without an engine says so in its
// host info; given one later (its engine answered late) it says it runs
// containers, and refuses a second engine.
func TestSetDockerLate(t *testing.T) {
	f := agenttest.NewFixture(t, agenttest.Options{})
	ctx := testenv.Context(t, time.Minute)
	if h, err := f.Client.Host(ctx); err != nil || h.Containers {
		t.Fatalf("host info before an engine: %+v, %v; want containers false", h, err)
	}
	cli, err := dockerrt.Connect(ctx, 5*time.Second)
	if errors.Is(err, dockerrt.ErrNoEngine) && os.Getenv("SHOAL_REQUIRE_DOCKER") != "1" {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	eng, err := dockerrt.New(ctx, cli, dockerrt.Options{Scope: t.TempDir(), Detached: true})
	if err != nil {
		cli.Close()
		t.Fatal(err)
	}
	if err := f.Agent.SetDocker(eng); err != nil {
		eng.Close(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	if h, err := f.Client.Host(ctx); err != nil || !h.Containers {
		t.Fatalf("host info after SetDocker: %+v, %v; want containers true", h, err)
	}
	if err := f.Agent.SetDocker(eng); err == nil {
		t.Error("a second engine was taken")
	}
}
