package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// idPattern is the runtime's rule for instance ids (they name directories).
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)

// maxStopTimeout bounds a launch spec's stop timeout: a stop request waits
// that long before SIGKILL.
const maxStopTimeout = time.Hour

// Labels the agent sets on every instance from its launch spec.
const (
	labelApp     = "app"
	labelRelease = "release"
	labelDigest  = "digest"
)

// checkSpec reports every problem of spec at once and returns the signal.
func checkSpec(spec api.LaunchSpec) (syscall.Signal, error) {
	var probs []error
	if !idPattern.MatchString(spec.ID) {
		probs = append(probs, fmt.Errorf("id %q: want 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'", spec.ID))
	}
	if !release.ValidDigest(spec.Digest) {
		probs = append(probs, fmt.Errorf("digest %q: want sha256:<64 lowercase hex digits>", spec.Digest))
	}
	switch spec.Runtime {
	case "":
		if spec.Command == "" {
			probs = append(probs, errors.New("command is empty"))
		}
		if spec.Port != 0 {
			probs = append(probs, fmt.Errorf("port %d: only with runtime %q", spec.Port, RuntimeDocker))
		}
	case RuntimeDocker:
		if spec.Port < 0 || spec.Port > 65535 {
			probs = append(probs, fmt.Errorf("port %d: want 0 to 65535", spec.Port))
		}
	default:
		probs = append(probs, fmt.Errorf("runtime %q: want %q or empty (a process)", spec.Runtime, RuntimeDocker))
	}
	if spec.Release < 0 {
		probs = append(probs, fmt.Errorf("release %d is negative", spec.Release))
	}
	if spec.StopTimeoutMS < 0 || spec.StopTimeout() > maxStopTimeout {
		probs = append(probs, fmt.Errorf("stop_timeout_ms %d: want 0 to %d", spec.StopTimeoutMS, maxStopTimeout.Milliseconds()))
	}
	sig := syscall.SIGTERM
	if spec.StopSignal != "" {
		sig = unix.SignalNum(spec.StopSignal)
		if sig == 0 {
			probs = append(probs, fmt.Errorf("stop_signal %q is not a signal name such as SIGTERM", spec.StopSignal))
		}
	}
	if len(probs) > 0 {
		return 0, fmt.Errorf("%w: launch spec: %w", ErrBadRequest, errors.Join(probs...))
	}
	return sig, nil
}

func (a *Agent) handleStart(w http.ResponseWriter, r *http.Request) error {
	var spec api.LaunchSpec
	if err := decode(r, &spec); err != nil {
		return err
	}
	sig, err := checkSpec(spec)
	if err != nil {
		return err
	}
	var info api.InstanceInfo
	var started bool
	// A start that waited for another of the same id, which ended because
	// its own caller went away, tries again itself (at most twice).
	for attempt := 0; ; attempt++ {
		err = a.starts.do(r.Context(), spec.ID, func() error {
			// Checked once this start is in flight: a stop recorded
			// its id before it waited for the starts in flight.
			if a.stopped.has(spec.ID) {
				return fmt.Errorf("%w: instance %s was stopped before this start arrived", ErrConflict, spec.ID)
			}
			var err error
			info, err = a.start(r.Context(), spec, sig)
			started = err == nil
			return err
		})
		if err == nil || r.Context().Err() != nil || attempt == 2 || !errors.Is(err, context.Canceled) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", spec.ID, err)
	}
	if !started { // a concurrent start of the same id did it
		if info, err = a.running(spec); err != nil {
			return fmt.Errorf("start %s: %w", spec.ID, err)
		}
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// start runs spec unless its id runs already, in which case it answers that
// instance. Starts of one id are serialised by the caller.
func (a *Agent) start(ctx context.Context, spec api.LaunchSpec, sig syscall.Signal) (api.InstanceInfo, error) {
	if info, err := a.running(spec); !errors.Is(err, runtime.ErrNotFound) {
		return info, err
	}
	if spec.Runtime == RuntimeDocker {
		return a.startContainer(ctx, spec, sig)
	}
	dir, err := a.ensureArtifact(ctx, spec.Digest)
	if err != nil {
		return api.InstanceInfo{}, err
	}
	labels, env := a.labelsAndEnv(spec)
	ri, err := a.rt.Start(ctx, runtime.Spec{
		ID: spec.ID, Dir: dir, Command: spec.Command, Env: env, Secrets: spec.Secrets,
		StopSignal: sig, StopTimeout: spec.StopTimeout(), Labels: labels,
	})
	if err != nil {
		return api.InstanceInfo{}, err
	}
	a.log.Info("instance started", "instance", spec.ID, "app", spec.App, "release", spec.Release,
		"digest", spec.Digest, "target", a.addr(ri.Port))
	return a.info(ri), nil
}

// labelsAndEnv are an instance's labels (spec's, with app, release and
// digest) and environment (spec's, with the address to bind).
func (a *Agent) labelsAndEnv(spec api.LaunchSpec) (map[string]string, []string) {
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[labelApp] = spec.App
	labels[labelRelease] = strconv.Itoa(spec.Release)
	labels[labelDigest] = spec.Digest
	env := append(spec.Env[:len(spec.Env):len(spec.Env)], "HOST="+a.advertise, "BIND_IP="+a.advertise)
	return labels, env
}

// running answers the instance spec.ID when it runs the same artifact and
// command (a container: the same artifact), an error wrapping ErrConflict
// when it runs others, and one wrapping runtime.ErrNotFound when it does
// not run.
func (a *Agent) running(spec api.LaunchSpec) (api.InstanceInfo, error) {
	if info, err := a.runningContainer(spec); !errors.Is(err, runtime.ErrNotFound) {
		return info, err
	}
	ri, err := a.rt.Get(spec.ID)
	if err != nil {
		return api.InstanceInfo{}, err
	}
	if d := ri.Labels[labelDigest]; d != spec.Digest || ri.Command != spec.Command {
		return api.InstanceInfo{}, fmt.Errorf("%w: instance %s already runs %q from %s", ErrConflict, spec.ID, ri.Command, d)
	}
	return a.info(ri), nil
}

func (a *Agent) addr(port int) string { return net.JoinHostPort(a.advertise, strconv.Itoa(port)) }

func (a *Agent) info(ri runtime.Info) api.InstanceInfo {
	rel, _ := strconv.Atoi(ri.Labels[labelRelease])
	return api.InstanceInfo{
		ID: ri.ID, PID: ri.PID, Addr: a.addr(ri.Port), Started: ri.StartedAt,
		App: ri.Labels[labelApp], Release: rel, Digest: ri.Labels[labelDigest], Labels: ri.Labels,
	}
}

// handleStop stops the instance (its stop signal, then SIGKILL after its
// stop timeout) and answers 204 once it has exited; an unknown id is 204 at
// once. A start of the id in progress is waited for first, so that the stop
// cannot pass it; one that arrives later is refused (stoppedIDs).
func (a *Agent) handleStop(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	a.stopped.add(id)
	if err := a.starts.wait(r.Context(), id); err != nil {
		return err
	}
	// Not the request's ctx: a caller that goes away must not turn the
	// grace period into an immediate SIGKILL.
	if _, ok := a.container(id); ok {
		docker, _ := a.engine()
		if err := docker.Stop(context.WithoutCancel(r.Context()), id); err != nil && !errors.Is(err, dockerrt.ErrNotFound) {
			return err
		}
	} else if err := a.rt.Stop(context.WithoutCancel(r.Context()), id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *Agent) handleList(w http.ResponseWriter, r *http.Request) error {
	// The cursor is read before the list: an instance missing from the
	// list has either ended at or before it, or ends after it and is in
	// the exits that follow it (the runtime forgets an instance before it
	// reports its exit).
	list := api.InstanceList{Epoch: a.exits.epoch, ExitSeq: a.exits.lastSeq(), Instances: []api.InstanceInfo{}}
	for _, ri := range a.rt.List() {
		list.Instances = append(list.Instances, a.info(ri))
	}
	if docker, _ := a.engine(); docker != nil {
		for _, di := range docker.List() {
			list.Instances = append(list.Instances, a.containerInfo(di))
		}
		slices.SortFunc(list.Instances, func(x, y api.InstanceInfo) int { return strings.Compare(x.ID, y.ID) })
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (a *Agent) handleExits(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: after=%q is not a sequence number", ErrBadRequest, v)
		}
		after = n
	}
	page, err := a.exits.after(r.Context(), q.Get("epoch"), after, a.pollWait)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// handleLogs writes the last tail lines (every line kept when tail is absent
// or <= 0) and, with follow=1, the output that follows until the instance
// has ended or the caller goes away.
func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	q := r.URL.Query()
	n := 0
	if v := q.Get("tail"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("%w: tail=%q is not a number", ErrBadRequest, v)
		}
	}
	if n <= 0 {
		n = math.MaxInt32
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	var err error
	if di, ok := a.container(id); ok {
		err = a.containerLogs(r.Context(), di, n, follow, fw)
	} else {
		err = a.rt.Tail(r.Context(), id, n, follow, fw)
	}
	switch {
	case err == nil:
		fw.start() // an empty log still answers 200
		return nil
	case !fw.started:
		return err
	case r.Context().Err() == nil:
		a.log.Warn("log stream ended", "instance", id, "error", err)
	}
	return nil
}

// flushWriter sends each write of a log stream at once.
type flushWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func (f *flushWriter) start() {
	if !f.started {
		f.started = true
		f.w.WriteHeader(http.StatusOK)
		f.rc.Flush()
	}
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.start()
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}

func (a *Agent) handleStats(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, ok := a.container(id); ok {
		docker, _ := a.engine()
		s, err := docker.Stats(r.Context(), id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, api.InstanceStats{CPUSeconds: s.CPUSeconds, RSSBytes: s.RSSBytes, Processes: 1})
		return nil
	}
	s, err := a.rt.Stats(id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.InstanceStats{CPUSeconds: s.CPUSeconds, RSSBytes: s.RSSBytes, Processes: s.Processes})
	return nil
}
