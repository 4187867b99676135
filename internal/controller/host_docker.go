package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// statsTimeout bounds one stats request to the engine.
const statsTimeout = 5 * time.Second

// DockerHost is the Host of `shoal up` for an app with runtime: docker:
// an instance of a docker release is a container of a dockerrt.Engine,
// run from the image its artifact holds (the saved image, loaded into the
// engine first when the engine lacks it); an instance of any other release
// (a rollback to a release made before the app moved to docker) goes to
// Process. It is safe for concurrent use.
type DockerHost struct {
	eng       *dockerrt.Engine
	artifacts *release.Store
	process   *LocalHost

	exits chan Exit
	done  chan struct{}

	mu      sync.Mutex
	images  map[string]string // artifact digest -> image ID
	docker  map[string]bool   // instance id -> runs in the engine
	secrets map[string][]string
	loadMu  sync.Mutex // one load at a time: two starts of a new release load it once
}

// NewDockerHost returns a Host running docker releases on eng and the
// others on process. It forwards the exits of both until both are closed
// (eng.Close and process's runtime's Close), then closes its Exits.
func NewDockerHost(eng *dockerrt.Engine, artifacts *release.Store, process *LocalHost) *DockerHost {
	h := &DockerHost{eng: eng, artifacts: artifacts, process: process,
		exits: make(chan Exit, 64), done: make(chan struct{}),
		images: map[string]string{}, docker: map[string]bool{}, secrets: map[string][]string{}}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for e := range eng.Exits() {
			h.exits <- Exit{ID: e.ID, Code: e.Code, Signal: e.Signal, Stopped: e.Stopped, At: e.At}
		}
	}()
	go func() {
		defer wg.Done()
		for e := range process.Exits() {
			h.exits <- e
		}
	}()
	go func() {
		wg.Wait()
		close(h.exits)
		close(h.done)
	}()
	return h
}

// Ended implements Ender: the instances whose container process was seen
// to end before the engine reported it.
func (h *DockerHost) Ended() <-chan string { return h.eng.Ended() }

// Done is closed once both runtimes are closed and every exit forwarded.
func (h *DockerHost) Done() <-chan struct{} { return h.done }

// Name implements Host.
func (h *DockerHost) Name() string { return "local" }

// Start implements Host. A docker release's image is looked up by the ID
// its artifact names, and loaded from the artifact (digest verified) when
// the engine lacks it.
func (h *DockerHost) Start(ctx context.Context, spec LaunchSpec) (Running, error) {
	if spec.Runtime != "docker" {
		return h.process.Start(ctx, spec)
	}
	if !release.ValidDigest(spec.Digest) {
		return Running{}, fmt.Errorf("start %s: invalid digest %q", spec.ID, spec.Digest)
	}
	image, err := h.image(ctx, spec.Digest)
	if err != nil {
		return Running{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	h.mu.Lock()
	h.docker[spec.ID] = true
	h.secrets[spec.ID] = spec.Secrets
	h.mu.Unlock()
	info, err := h.eng.Start(ctx, dockerrt.Spec{
		ID: spec.ID, App: spec.App, Release: spec.Release, Image: image,
		Cmd: strings.Fields(spec.Command), Env: spec.Env, ContainerPort: spec.Port,
		StopSignal: spec.StopSignal, StopTimeout: spec.StopTimeout,
		CPU: spec.CPU, Memory: spec.Memory,
	})
	if err != nil {
		h.mu.Lock()
		delete(h.docker, spec.ID)
		delete(h.secrets, spec.ID)
		h.mu.Unlock()
		return Running{}, err
	}
	return Running{Addr: info.Addr, PID: info.PID, Started: info.StartedAt, Host: h.Name()}, nil
}

// image returns the image ID of artifact d, loading the image into the
// engine when it lacks it.
func (h *DockerHost) image(ctx context.Context, d string) (string, error) {
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	h.mu.Lock()
	id, ok := h.images[d]
	h.mu.Unlock()
	if !ok {
		rc, err := h.artifacts.OpenTar(ctx, d)
		if err != nil {
			return "", err
		}
		id, err = dockerrt.ImageID(rc)
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("artifact %s is not a saved image: %w", d, err)
		}
	}
	layers, err := h.artifacts.Layers(d)
	if err != nil {
		return "", err
	}
	pull, err := h.artifacts.PullRef(d)
	if err != nil {
		return "", err
	}
	err = h.eng.Ensure(ctx, dockerrt.SavedImage{
		ID: id, DiffIDs: release.DiffIDs(layers), Pull: pull,
		Fetch: func(context.Context, int) error {
			m, err := h.artifacts.Missing(d)
			if err == nil && len(m) > 0 {
				err = fmt.Errorf("%w: %s", release.ErrNotFound, strings.Join(m, ", "))
			}
			if err != nil {
				return fmt.Errorf("layers of image %s: %w", d, err)
			}
			return nil
		},
		Open: func(ctx context.Context, held int) (io.ReadCloser, error) {
			return h.artifacts.OpenImage(ctx, d, held)
		},
	})
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	h.images[d] = id
	h.mu.Unlock()
	return id, nil
}

func (h *DockerHost) isDocker(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.docker[id]
}

// Stop implements Host.
func (h *DockerHost) Stop(ctx context.Context, id string) error {
	if !h.isDocker(id) {
		return h.process.Stop(ctx, id)
	}
	err := h.eng.Stop(ctx, id)
	if errors.Is(err, dockerrt.ErrNotFound) {
		return nil
	}
	return err
}

// Exits implements Host.
func (h *DockerHost) Exits() <-chan Exit { return h.exits }

// Logs implements Host: a container's output as the engine keeps it,
// with the instance's secrets replaced.
func (h *DockerHost) Logs(ctx context.Context, id string, tail int, follow bool, w io.Writer) error {
	if !h.isDocker(id) {
		return h.process.Logs(ctx, id, tail, follow, w)
	}
	h.mu.Lock()
	secrets := h.secrets[id]
	h.mu.Unlock()
	rw := runtime.NewRedactor(w, secrets)
	err := h.eng.Logs(ctx, id, tail, follow, rw)
	if cerr := rw.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, dockerrt.ErrNotFound) {
		return fmt.Errorf("logs %s: %w", id, ErrUnknownInstance)
	}
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// Stats implements Host.
func (h *DockerHost) Stats(id string) (Stats, error) {
	if !h.isDocker(id) {
		return h.process.Stats(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	s, err := h.eng.Stats(ctx, id)
	if err != nil {
		return Stats{}, err
	}
	return Stats{CPUSeconds: s.CPUSeconds, RSSBytes: s.RSSBytes}, nil
}
