package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// LocalHost is the Host of `shoal up`: instances are processes on this
// machine, run by a runtime.Local from artifacts unpacked out of a
// release.Store. It is safe for concurrent use.
type LocalHost struct {
	rt        *runtime.Local
	artifacts *release.Store
	// unpackDir holds one read-only tree per artifact, shared by every
	// instance of the releases that use it.
	unpackDir string
	exits     chan Exit
	done      chan struct{}
}

// NewLocalHost returns a Host backed by rt. Unpacked artifacts go under
// unpackDir. It starts a goroutine that forwards rt's exits; it ends when
// rt is closed (rt.Close closes its Exits channel), after which the
// LocalHost's Exits channel is closed too.
func NewLocalHost(rt *runtime.Local, artifacts *release.Store, unpackDir string) *LocalHost {
	h := &LocalHost{rt: rt, artifacts: artifacts, unpackDir: unpackDir, exits: make(chan Exit, 64), done: make(chan struct{})}
	go h.forward()
	return h
}

func (h *LocalHost) forward() {
	defer close(h.done)
	defer close(h.exits)
	for e := range h.rt.Exits() {
		h.exits <- Exit{ID: e.ID, Code: e.Code, Signal: e.Signal, Stopped: e.Stopped, At: e.At}
	}
}

// Done is closed once the runtime is closed and every exit forwarded.
func (h *LocalHost) Done() <-chan struct{} { return h.done }

// Name implements Host.
func (h *LocalHost) Name() string { return "local" }

// Start implements Host: it unpacks the artifact once per digest, then
// starts the process in that tree.
func (h *LocalHost) Start(ctx context.Context, spec LaunchSpec) (Running, error) {
	if spec.Runtime == "docker" {
		return Running{}, fmt.Errorf("start %s: release v%d runs on docker (runtime: docker) and this host runs processes only: restart shoal up so that it connects to the docker engine", spec.ID, spec.Release)
	}
	if !release.ValidDigest(spec.Digest) {
		return Running{}, fmt.Errorf("start %s: invalid digest %q", spec.ID, spec.Digest)
	}
	dir := filepath.Join(h.unpackDir, strings.TrimPrefix(spec.Digest, release.DigestPrefix))
	if err := h.artifacts.Unpack(ctx, spec.Digest, dir); err != nil {
		return Running{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	info, err := h.rt.Start(ctx, runtime.Spec{
		ID: spec.ID, Dir: dir, Command: spec.Command, Env: spec.Env, Secrets: spec.Secrets,
		StopSignal: spec.StopSignal, StopTimeout: spec.StopTimeout,
		Labels: map[string]string{"app": spec.App, "release": fmt.Sprint(spec.Release)},
	})
	if err != nil {
		return Running{}, err
	}
	return Running{Addr: info.Addr, PID: info.PID, Started: info.StartedAt, Host: h.Name()}, nil
}

// Stop implements Host.
func (h *LocalHost) Stop(ctx context.Context, id string) error {
	err := h.rt.Stop(ctx, id)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	return err
}

// Exits implements Host.
func (h *LocalHost) Exits() <-chan Exit { return h.exits }

// Logs implements Host.
func (h *LocalHost) Logs(ctx context.Context, id string, tail int, follow bool, w io.Writer) error {
	err := h.rt.Tail(ctx, id, tail, follow, w)
	if errors.Is(err, runtime.ErrNotFound) {
		return fmt.Errorf("logs %s: %w", id, ErrUnknownInstance)
	}
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// Stats implements Host.
func (h *LocalHost) Stats(id string) (Stats, error) {
	s, err := h.rt.Stats(id)
	if err != nil {
		return Stats{}, err
	}
	return Stats{CPUSeconds: s.CPUSeconds, RSSBytes: s.RSSBytes}, nil
}
