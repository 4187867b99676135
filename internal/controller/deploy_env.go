package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/hooks"
	"github.com/shoal-dev/shoal/internal/release"
)

// ErrInvalidEnv means an env override has a bad or reserved name.
var ErrInvalidEnv = errors.New("invalid env variable")

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// EnvOverrides returns the overrides set with `shoal env set`, secrets
// redacted, sorted by name.
func (c *Controller) EnvOverrides() ([]api.EnvVar, error) {
	vs, err := c.o.Store.EnvOverrides(c.cfg.Name)
	if err != nil {
		return nil, err
	}
	out := []api.EnvVar{}
	for _, v := range vs {
		val := v.Value
		if v.Secret {
			val = config.RedactedValue
		}
		out = append(out, api.EnvVar{Name: v.Name, Value: val, Secret: v.Secret})
	}
	return out, nil
}

// SetEnv stores env overrides (set replaces variables of the same name,
// unset removes names) and deploys a config-only release with them, as
// Deploy with ConfigOnly does. Overrides are merged over shoal.yaml's env
// at every release made afterwards. It returns ErrInvalidEnv for a bad
// name, and fails at once, changing nothing, while another deploy runs.
func (c *Controller) SetEnv(ctx context.Context, set []api.EnvVar, unset []string, req DeployRequest) (int, error) {
	var errs []error
	for _, v := range set {
		errs = append(errs, checkEnvName(v.Name))
	}
	for _, n := range unset {
		errs = append(errs, checkEnvName(n))
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if h, _, held := c.dep.lock.Holder(c.cfg.Name); held && !req.Wait {
		return 0, fmt.Errorf("a deploy of v%d is in progress; nothing changed: wait for it or run shoal deploy --abort", h.Release)
	}
	var names []string
	for _, v := range set {
		names = append(names, "set "+v.Name)
	}
	for _, n := range unset {
		names = append(names, "unset "+n)
	}
	// Recorded before it is made, refused when it cannot be (events.go).
	if err := c.events.record(api.Event{Type: "env", Reason: "env overrides changed: " + strings.Join(names, ", ")}); err != nil {
		return 0, fmt.Errorf("nothing changed: %w", err)
	}
	prev, err := c.o.Store.EnvOverrides(c.cfg.Name)
	if err != nil {
		c.events.add(api.Event{Type: "env", Reason: "env overrides not changed: " + err.Error()})
		return 0, fmt.Errorf("nothing changed: %w", err)
	}
	if _, err := c.o.Store.UpdateEnvOverrides(c.cfg.Name, set, unset); err != nil {
		c.events.add(api.Event{Type: "env", Reason: "env overrides not changed: " + err.Error()})
		return 0, fmt.Errorf("nothing changed: %w", err)
	}
	req.ConfigOnly = true
	v, err := c.Deploy(ctx, req)
	if err != nil && (v == 0 || c.Release().Version != v) {
		// No release was made (a full disk, a bad shoal.yaml, a refused
		// pre-deploy hook), or its rollout went back: put the overrides
		// back, so that what `shoal env list` shows is what runs.
		if uerr := c.undoEnvOverrides(prev, set, unset); uerr != nil {
			return v, fmt.Errorf("%w; the overrides stay stored but do not run: %w", err, uerr)
		}
		if v == 0 {
			return 0, fmt.Errorf("nothing changed: %w", err)
		}
		return v, fmt.Errorf("%w; the overrides were put back", err)
	}
	return v, err
}

// undoEnvOverrides restores the overrides of the names that SetEnv set or
// unset to what prev held, and records that it did.
func (c *Controller) undoEnvOverrides(prev, set []api.EnvVar, unset []string) error {
	old := map[string]api.EnvVar{}
	for _, v := range prev {
		old[v.Name] = v
	}
	var reset []api.EnvVar
	var drop []string
	names := make([]string, 0, len(set)+len(unset))
	for _, v := range set {
		names = append(names, v.Name)
	}
	names = append(names, unset...)
	for _, n := range names {
		if v, ok := old[n]; ok {
			reset = append(reset, v)
		} else {
			drop = append(drop, n)
		}
	}
	if _, err := c.o.Store.UpdateEnvOverrides(c.cfg.Name, reset, drop); err != nil {
		return fmt.Errorf("undo the overrides: %w", err)
	}
	c.events.add(api.Event{Type: "env", Reason: "env overrides changed back: their release does not run"})
	return nil
}

func checkEnvName(n string) error {
	switch {
	case !envNameRe.MatchString(n):
		return fmt.Errorf("%w: %q is not a variable name (letters, digits and _, not starting with a digit)", ErrInvalidEnv, n)
	case n == "PORT" || n == "ROOT_URL" || strings.HasPrefix(n, "SHOAL_"):
		return fmt.Errorf("%w: %s is reserved", ErrInvalidEnv, n)
	}
	return nil
}

// releaseEnv is the environment of a release made from cfg now:
// shoal.yaml's env with the stored overrides merged over it.
func (c *Controller) releaseEnv(cfg *config.App) (config.Env, error) {
	lookup := c.o.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	env, err := cfg.Env(lookup)
	if err != nil {
		return nil, err
	}
	over, err := c.o.Store.EnvOverrides(cfg.Name)
	if err != nil {
		return nil, err
	}
	return mergeEnv(env, envFromStore(over)), nil
}

// buildArtifact builds cfg's artifact once (reusing it when the source is
// unchanged), writing the build's output, redacted, to log. A failed
// build is a "build" event; its error names the failure once, without
// the layers of context it passed through.
func (c *Controller) buildArtifact(ctx context.Context, cfg *config.App, env config.Env, log io.Writer) (release.Artifact, bool, error) {
	rw := &redactWriter{w: log, env: env}
	defer rw.Flush()
	spec, err := buildSpec(cfg, rw)
	if err != nil {
		return release.Artifact{}, false, err
	}
	start := c.now()
	art, built, err := c.o.Artifacts.BuildOnce(ctx, spec)
	if err != nil {
		reason := env.Redact(buildFailure(err))
		c.events.add(api.Event{Type: "build", Reason: "build failed: " + reason})
		return art, false, errors.New(reason)
	}
	if built {
		c.events.add(api.Event{Type: "build", Reason: fmt.Sprintf("built artifact %s in %s", short(art.Digest), c.now().Sub(start).Round(1e6))})
	}
	return art, built, nil
}

// buildSpec is how cfg's app is built and packed; log receives the build
// command's output (nil discards it).
func buildSpec(cfg *config.App, log io.Writer) (release.BuildSpec, error) {
	spec := release.BuildSpec{Dir: cfg.Dir, Exclude: buildExclude(cfg), Log: log}
	if cfg.Build != nil {
		spec.Command = cfg.Build.Command
		out, err := filepath.Rel(cfg.Dir, cfg.OutputDir())
		if err != nil {
			return release.BuildSpec{}, fmt.Errorf("build output: %w", err)
		}
		spec.Output = out
		for k, v := range cfg.Build.Env {
			spec.Env = append(spec.Env, k+"="+v)
		}
		sort.Strings(spec.Env)
	}
	return spec, nil
}

// buildFailure says why a build failed in one phrase: the command and its
// exit status for a failed build command, else the release package's
// error (which says build, pack or fingerprint itself).
func buildFailure(err error) string {
	var be *release.BuildError
	if !errors.As(err, &be) {
		return err.Error()
	}
	if be.ExitCode >= 0 {
		return fmt.Sprintf("build command %q exited with status %d", be.Command, be.ExitCode)
	}
	return fmt.Sprintf("build command %q failed: %v", be.Command, be.Err)
}

// runHooks runs the deploy hooks of one kind in order, in the app folder,
// with shoal's environment plus the release's (SHOAL_APP and
// SHOAL_HOOK added), output redacted and written to log. It stops at the
// first failure.
func (c *Controller) runHooks(ctx context.Context, kind string, cfg *config.App, env config.Env, cmds []string, log io.Writer) error {
	if len(cmds) == 0 {
		return nil
	}
	base := os.Environ()
	base = append(base, env.Environ()...)
	base = append(base, "SHOAL_APP="+cfg.Name, "SHOAL_HOOK="+kind)
	for i, cmd := range cmds {
		name := kind
		if len(cmds) > 1 {
			name += "[" + strconv.Itoa(i) + "]"
		}
		fmt.Fprintf(log, "running %s hook: %s\n", name, env.Redact(cmd))
		c.events.add(api.Event{Type: "hook", Reason: env.Redact(fmt.Sprintf("%s hook started: %s", name, cmd))})
		err := hooks.Run(ctx, hooks.Hook{Name: name, Command: cmd, Dir: cfg.Dir, Env: base,
			Timeout: cfg.HookTimeout(), Redact: env.Redact}, log)
		var he *hooks.HookError
		if errors.As(err, &he) {
			return err // it names the hook
		}
		if err != nil {
			return fmt.Errorf("%s hook: %w", name, err)
		}
		c.events.add(api.Event{Type: "hook", Reason: fmt.Sprintf("%s hook succeeded", name)})
	}
	return nil
}

// buildExclude is what the artifact leaves out: the configuration's
// exclusions (the secrets file and the settings among them: they reach
// instances only as environment) plus shoal.yaml itself, which instances
// never read. Leaving it out is what makes an edit of run.env in
// shoal.yaml a config-only release (same artifact) instead of a rebuild.
// A build whose output is a folder of its own may copy the app folder, or
// part of it, into that output: shoal.yaml, the secrets file and the
// settings are left out at the same relative place under the output too.
func buildExclude(cfg *config.App) []string {
	ex := append(cfg.Exclude(), cfg.File)
	out := cfg.OutputDir()
	if out == cfg.Dir {
		return ex
	}
	for _, p := range []string{cfg.File, cfg.Run.SecretsFile, cfg.Run.Settings} {
		if p == "" {
			continue
		}
		rel, err := filepath.Rel(cfg.Dir, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue // outside the app folder: a build does not copy it by copying the folder
		}
		ex = append(ex, filepath.Join(out, rel))
	}
	return ex
}
