package dockerrt

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// removeScopeAtEnd force-removes, at the end of t, every container of
// scope that a Detached Engine leaves running by design.
func removeScopeAtEnd(t *testing.T, raw *client.Client, scope string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := raw.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", LabelScope+"="+scope))})
		for _, c := range list {
			raw.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	})
}

// TestDetachedAdoptsRunningAndRemovesTheRest: a Detached Engine's Close
// leaves its running container running and removes its exited one; the
// next Engine of the scope (as after a restart, or a SIGKILL, of the
// agent) adopts the running one with its labels, address and secrets,
// removes a container created but never started, reports the adopted
// one's exit, and stops it on request.
func TestDetachedAdoptsRunningAndRemovesTheRest(t *testing.T) {
	raw := connect(t)
	t.Cleanup(func() { raw.Close() })
	img := testImage(t, raw)
	ctx := testenv.Context(t, 2*time.Minute)
	scope := fmt.Sprintf("test-%s-%d", t.Name(), time.Now().UnixNano())
	removeScopeAtEnd(t, raw, scope)

	e1, err := New(ctx, connect(t), Options{Scope: scope, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{ID: "a-1", App: "web", Release: 3, Image: img, StopTimeout: 5 * time.Second,
		Env: []string{"TOKEN=hush", "PLAIN=x"}, Secrets: []string{"hush", "other"}, Labels: map[string]string{"digest": "sha256:abc"}}
	running, err := e1.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	spec2 := spec
	spec2.ID = "a-2"
	stopped, err := e1.Start(ctx, spec2)
	if err != nil {
		t.Fatal(err)
	}
	if err := e1.Stop(ctx, "a-2"); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, e1, "a-2"); !ex.Stopped {
		t.Fatalf("exit %+v", ex)
	}
	if err := e1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if in, err := raw.ContainerInspect(ctx, running.Container); err != nil || !in.State.Running {
		t.Fatalf("the running container after a detached Close: %v", err)
	}
	if _, err := raw.ContainerInspect(ctx, stopped.Container); !client.IsErrNotFound(err) {
		t.Fatalf("the exited container after a detached Close: %v", err)
	}
	// A container created and never started: what a run killed between
	// the two calls leaves.
	orphan, err := raw.ContainerCreate(ctx, &container.Config{Image: img, Labels: map[string]string{LabelScope: scope, LabelInstance: "a-3", LabelRelease: "3"}},
		nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}

	e2, err := New(ctx, connect(t), Options{Scope: scope, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e2.Close(context.Background()) })
	if _, err := raw.ContainerInspect(ctx, orphan.ID); !client.IsErrNotFound(err) {
		t.Errorf("the never-started container after the adoption: %v", err)
	}
	list := e2.List()
	if len(list) != 1 {
		t.Fatalf("adopted %d instances, want 1: %+v", len(list), list)
	}
	got := list[0]
	if got.ID != "a-1" || got.App != "web" || got.Release != 3 || got.Addr != running.Addr || got.Container != running.Container ||
		got.Labels["digest"] != "sha256:abc" || !slices.Equal(got.Secrets, []string{"hush"}) || got.PID != running.PID {
		t.Fatalf("adopted %+v\nstarted %+v", got, running)
	}
	if body, err := get(got.Addr, "/"); err != nil || !strings.Contains(body, "dockerapp") {
		t.Fatalf("GET the adopted instance: %q, %v", body, err)
	}
	if err := raw.ContainerKill(ctx, running.Container, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, e2, "a-1"); ex.Stopped || ex.Signal != "SIGKILL" {
		t.Fatalf("exit of the adopted instance: %+v", ex)
	}
	if _, err := e2.Get("a-1"); err == nil {
		t.Error("Get answers an exited instance")
	}
	if _, err := e2.Known("a-1"); err != nil {
		t.Errorf("Known: %v (its container is kept for its logs)", err)
	}
}
