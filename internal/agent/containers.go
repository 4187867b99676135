package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// RuntimeDocker is api.LaunchSpec.Runtime for a container instance.
const RuntimeDocker = "docker"

// ErrNoEngine is returned (wrapped) for a container instance asked of an
// agent that has no Docker engine (Config.Docker nil); it answers 501, and
// the server places the instance on another host.
var ErrNoEngine = errors.New("no docker engine")

// exitLogTail is how many lines of a container's output go with its exit,
// as a process's last lines do.
const exitLogTail = 20

// startContainer runs spec as a container of the image its artifact
// holds: the artifact is fetched (verified) when the store lacks it, its
// image loaded into the engine once when the engine lacks it.
func (a *Agent) startContainer(ctx context.Context, spec api.LaunchSpec, sig syscall.Signal) (api.InstanceInfo, error) {
	docker, why := a.engine()
	if docker == nil {
		return api.InstanceInfo{}, fmt.Errorf("%w on host %s: %s", ErrNoEngine, a.name, why)
	}
	if err := a.haveArtifact(ctx, spec.Digest); err != nil {
		return api.InstanceInfo{}, err
	}
	image, err := a.image(ctx, docker, spec.Digest)
	if err != nil {
		return api.InstanceInfo{}, err
	}
	labels, env := a.labelsAndEnv(spec)
	di, err := docker.Start(ctx, dockerrt.Spec{
		ID: spec.ID, App: spec.App, Release: spec.Release, Image: image,
		Cmd: strings.Fields(spec.Command), Env: env, ContainerPort: spec.Port,
		StopSignal: sig, StopTimeout: spec.StopTimeout(), Labels: labels, Secrets: spec.Secrets,
	})
	if err != nil {
		return api.InstanceInfo{}, err
	}
	a.log.Info("instance started", "instance", spec.ID, "app", spec.App, "release", spec.Release,
		"digest", spec.Digest, "target", a.addr(di.Port), "runtime", RuntimeDocker)
	return a.containerInfo(di), nil
}

// image returns the ID of the image artifact digest holds, loading it
// into the engine when the engine lacks it: once per digest, whatever the
// number of concurrent starts. Of an image stored by layers, only the
// layers the engine lacks are fetched (each once, verified, kept in the
// store like any artifact); an image named by a registry reference is
// pulled from the registry.
func (a *Agent) image(ctx context.Context, docker *dockerrt.Engine, digest string) (string, error) {
	err := a.loads.do(ctx, digest, func() error {
		a.imagesMu.Lock()
		known, ok := a.images[digest]
		a.imagesMu.Unlock()
		if !ok {
			rc, err := a.artifacts.OpenTar(ctx, digest)
			if err != nil {
				return fmt.Errorf("open artifact %s: %w", digest, err)
			}
			known, err = dockerrt.ImageID(rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("%w: artifact %s is not a saved image: %w", ErrBadRequest, digest, err)
			}
		}
		layers, err := a.artifacts.Layers(digest)
		if err != nil {
			return fmt.Errorf("open artifact %s: %w", digest, err)
		}
		pull, err := a.artifacts.PullRef(digest)
		if err != nil {
			return fmt.Errorf("open artifact %s: %w", digest, err)
		}
		err = docker.Ensure(ctx, dockerrt.SavedImage{
			ID: known, DiffIDs: release.DiffIDs(layers), Pull: pull,
			Fetch: func(ctx context.Context, held int) error {
				for _, l := range layers[held:] {
					if err := a.haveArtifact(ctx, l.Artifact); err != nil {
						return fmt.Errorf("layer %s of %s: %w", l.DiffID, digest, err)
					}
				}
				return nil
			},
			Open: func(ctx context.Context, held int) (io.ReadCloser, error) {
				return a.artifacts.OpenImage(ctx, digest, held)
			},
		})
		if err != nil {
			return err
		}
		a.imagesMu.Lock()
		a.images[digest] = known
		a.imagesMu.Unlock()
		return nil
	})
	if err != nil {
		return "", err
	}
	a.imagesMu.Lock()
	defer a.imagesMu.Unlock()
	return a.images[digest], nil
}

func (a *Agent) containerInfo(di dockerrt.Info) api.InstanceInfo {
	return api.InstanceInfo{
		ID: di.ID, PID: di.PID, Addr: a.addr(di.Port), Started: di.StartedAt,
		App: di.App, Release: di.Release, Digest: di.Labels[labelDigest], Labels: di.Labels,
	}
}

// container reports whether id is (or was, while its container is kept)
// a container instance, and its Info.
func (a *Agent) container(id string) (dockerrt.Info, bool) {
	docker, _ := a.engine()
	if docker == nil {
		return dockerrt.Info{}, false
	}
	di, err := docker.Known(id)
	return di, err == nil
}

// runningContainer answers the container instance spec.ID when it runs the
// same artifact, an error wrapping ErrConflict when it runs another, and
// one wrapping runtime.ErrNotFound when no container runs it.
func (a *Agent) runningContainer(spec api.LaunchSpec) (api.InstanceInfo, error) {
	docker, _ := a.engine()
	if docker == nil {
		return api.InstanceInfo{}, fmt.Errorf("%s: %w", spec.ID, runtime.ErrNotFound)
	}
	di, err := docker.Get(spec.ID)
	if err != nil {
		return api.InstanceInfo{}, fmt.Errorf("%s: %w", spec.ID, runtime.ErrNotFound)
	}
	if d := di.Labels[labelDigest]; d != spec.Digest {
		return api.InstanceInfo{}, fmt.Errorf("%w: instance %s already runs a container of %s", ErrConflict, spec.ID, d)
	}
	return a.containerInfo(di), nil
}

// containerLogs writes a container's output, its secrets redacted.
func (a *Agent) containerLogs(ctx context.Context, di dockerrt.Info, n int, follow bool, w io.Writer) error {
	rw := runtime.NewRedactor(w, di.Secrets)
	docker, _ := a.engine()
	err := docker.Logs(ctx, di.ID, n, follow, rw)
	if cerr := rw.Close(); err == nil {
		err = cerr
	}
	return err
}

// containerExit is the exit of a container as the agent reports it, with
// the last lines of its output.
func (a *Agent) containerExit(x dockerrt.Exit) api.InstanceExit {
	out := api.InstanceExit{ID: x.ID, Code: x.Code, Signal: x.Signal, Stopped: x.Stopped, At: x.At}
	if x.OOM {
		out.LogTail = "killed for its memory limit (OOM)\n"
	}
	if di, ok := a.container(x.ID); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var buf bytes.Buffer
		if err := a.containerLogs(ctx, di, exitLogTail, false, &buf); err == nil {
			out.LogTail = buf.String() + out.LogTail
		}
		cancel()
	}
	return out
}
