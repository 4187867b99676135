package dockerrt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"
)

// Labels that carry what an adopting Engine needs to know again.
const (
	// LabelPrefix prefixes each of Spec.Labels on the container.
	LabelPrefix = "dev.shoal.label."
	// LabelSecretEnv lists (comma-separated) the names of the env entries
	// that held a secret value: names only, never a value.
	LabelSecretEnv = "dev.shoal.secret-env"
)

// containerLabels are the labels of spec's container.
func containerLabels(scope string, spec Spec) map[string]string {
	l := map[string]string{LabelScope: scope, LabelApp: spec.App,
		LabelRelease: strconv.Itoa(spec.Release), LabelInstance: spec.ID}
	for k, v := range spec.Labels {
		l[LabelPrefix+k] = v
	}
	if names := secretEnvNames(spec.Env, spec.Secrets); len(names) > 0 {
		l[LabelSecretEnv] = strings.Join(names, ",")
	}
	return l
}

// secretEnvNames returns the names of the entries of env whose value is
// one of secrets.
func secretEnvNames(env, secrets []string) []string {
	names, _ := envWhere(env, func(_, v string) bool { return slices.Contains(secrets, v) })
	return names
}

// secretValues returns the values of the entries of env named in names
// (LabelSecretEnv's comma-separated list).
func secretValues(env []string, names string) []string {
	if names == "" {
		return nil
	}
	want := strings.Split(names, ",")
	_, values := envWhere(env, func(k, _ string) bool { return slices.Contains(want, k) })
	return values
}

// envWhere returns the names and values of the NAME=value entries of env
// with a value that keep accepts.
func envWhere(env []string, keep func(name, value string) bool) (names, values []string) {
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && v != "" && keep(k, v) {
			names, values = append(names, k), append(values, v)
		}
	}
	return names, values
}

// adoptScope takes over the running containers of the scope (a Detached
// Engine's New) and removes every other container of it. A running
// container that cannot be adopted (its labels damaged) is removed too,
// with a warning naming it: nothing of the scope is left unowned. Only a
// failed list is an error; a container that cannot be removed is logged
// as an error (an operator must act).
func (e *Engine) adoptScope(ctx context.Context) error {
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelScope+"="+e.scope))})
	if err != nil {
		return fmt.Errorf("list the containers of scope %s: %w", e.scope, err)
	}
	for _, s := range list {
		if s.State == "running" {
			err := e.adopt(ctx, s.ID)
			if err == nil {
				continue
			}
			e.log.Warn("running container not adopted; removing it", "container", short(s.ID), "instance", s.Labels[LabelInstance], "error", err)
		}
		if err := e.cli.ContainerRemove(ctx, s.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			e.log.Error("leftover container could not be removed", "container", short(s.ID), "instance", s.Labels[LabelInstance], "error", err)
			continue
		}
		e.log.Info("leftover container removed", "container", short(s.ID), "instance", s.Labels[LabelInstance], "state", s.State)
	}
	return nil
}

// adopt takes over running container cid: its instance is known again
// from its labels and configuration, watched as if this Engine had
// started it, and reported in List.
func (e *Engine) adopt(ctx context.Context, cid string) error {
	in, err := e.cli.ContainerInspect(ctx, cid)
	if err != nil {
		return err
	}
	if in.Config == nil || in.State == nil || in.HostConfig == nil {
		return errors.New("the engine reported no configuration")
	}
	labels := in.Config.Labels
	id := labels[LabelInstance]
	rel, err := strconv.Atoi(labels[LabelRelease])
	if id == "" || err != nil {
		return fmt.Errorf("labels %s=%q, %s=%q: not an instance's", LabelInstance, id, LabelRelease, labels[LabelRelease])
	}
	port, err := hostPort(in)
	if err != nil {
		return err
	}
	spec := Spec{ID: id, App: labels[LabelApp], Release: rel, Image: in.Image, Env: in.Config.Env,
		StopSignal: syscall.SIGTERM, StopTimeout: 10 * time.Second, Labels: map[string]string{}}
	if sig := unix.SignalNum(in.Config.StopSignal); sig != 0 {
		spec.StopSignal = sig
	}
	if in.Config.StopTimeout != nil {
		spec.StopTimeout = time.Duration(*in.Config.StopTimeout) * time.Second
	}
	for k, v := range labels {
		if name, ok := strings.CutPrefix(k, LabelPrefix); ok {
			spec.Labels[name] = v
		}
	}
	spec.Secrets = secretValues(in.Config.Env, labels[LabelSecretEnv])
	info := Info{ID: id, Container: cid, Addr: net.JoinHostPort(e.bindIP, strconv.Itoa(port)), Port: port,
		PID: in.State.Pid, App: spec.App, Release: rel, Labels: spec.Labels, Secrets: spec.Secrets}
	if t, err := time.Parse(time.RFC3339Nano, in.State.StartedAt); err == nil {
		info.StartedAt = t
	}
	c := &ctr{id: id, cid: cid, spec: spec, port: port, info: info, done: make(chan struct{}), watch: make(chan (<-chan earlyExit), 1)}
	wctx, wcancel := context.WithCancel(context.Background())
	c.cancel = wcancel
	// Not "next-exit": the container may have ended since it was listed,
	// and then only "not-running" answers.
	waitC, errC := e.cli.ContainerWait(wctx, cid, container.WaitConditionNotRunning)
	e.mu.Lock()
	if _, dup := e.byID[id]; dup {
		e.mu.Unlock()
		wcancel()
		return fmt.Errorf("instance %s has two containers", id)
	}
	e.byID[id] = c
	e.ports[port] = true
	e.wg.Add(1)
	e.mu.Unlock()
	go e.wait(c, waitC, errC, wcancel)
	c.watch <- watchProcess(in.State.Pid, cid, wctx.Done(), func() {
		select {
		case e.ended <- id:
		default:
		}
	})
	e.log.Info("container adopted", "instance", id, "container", short(cid), "addr", info.Addr, "release", rel)
	return nil
}

// hostPort is the port a container serves on: its published port, or on
// the host's network the PORT it was given.
func hostPort(in container.InspectResponse) (int, error) {
	for _, bs := range in.HostConfig.PortBindings {
		for _, b := range bs {
			if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 {
				return p, nil
			}
		}
	}
	for _, kv := range in.Config.Env {
		if v, ok := strings.CutPrefix(kv, "PORT="); ok {
			if p, err := strconv.Atoi(v); err == nil && p > 0 && p < 65536 {
				return p, nil
			}
		}
	}
	return 0, errors.New("neither a published port nor a PORT in its env")
}

// Get returns the running (or adopted and running) instance id, or an
// error wrapping ErrNotFound.
func (e *Engine) Get(id string) (Info, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.byID[id]
	if !ok || c.info.ID == "" || isDone(c) {
		return Info{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return c.info.clone(), nil
}

// List returns the instances whose containers run, sorted by ID.
func (e *Engine) List() []Info {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Info
	for _, c := range e.byID {
		if c.info.ID != "" && !isDone(c) {
			out = append(out, c.info.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func isDone(c *ctr) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (i Info) clone() Info {
	i.Labels = maps.Clone(i.Labels)
	i.Secrets = slices.Clone(i.Secrets)
	return i
}

// Known returns the instance id, running or exited (an exited one is
// known while its container is kept for its logs), or an error wrapping
// ErrNotFound.
func (e *Engine) Known(id string) (Info, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.byID[id]
	if !ok || c.info.ID == "" {
		return Info{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return c.info.clone(), nil
}
