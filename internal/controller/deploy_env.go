package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/rollout"
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
// unset removes names) and deploys a config-only release with them: the
// current release's artifact, its stored configuration and its environment
// as deployed, with the overrides merged over it; shoal.yaml is not read.
// Overrides are merged over the deployed env of every release made
// afterwards. req's Config, Env and Digest are ignored. It returns
// ErrInvalidEnv for a bad name, and fails at once, changing nothing,
// while another deploy runs.
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
	if h, since, held := c.dep.lock.Holder(c.cfg.Name); held && !req.Wait {
		// A *rollout.LockedError, as a second deploy's: the API answers
		// 409 Conflict (the caller may wait and try again), not 500.
		return 0, fmt.Errorf("nothing changed: %w", &rollout.LockedError{Group: c.cfg.Name, Holder: h, Since: since, Age: c.now().Sub(since)})
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
	if _, err := c.o.Writer.UpdateEnvOverrides(c.cfg.Name, set, unset); err != nil {
		c.events.add(api.Event{Type: "env", Reason: "env overrides not changed: " + err.Error()})
		return 0, fmt.Errorf("nothing changed: %w", err)
	}
	req.fromCurrent = true
	v, err := c.Deploy(ctx, req)
	if h, _, held := c.dep.lock.Holder(c.cfg.Name); err != nil && v != 0 && held && h.Release == v {
		// The call ended (its caller gone, as when a follower's forward
		// breaks) while the release's rollout goes on: the overrides stay,
		// since the release may yet serve them, and a client that follows
		// the deploy to its end must find them stored.
		return v, fmt.Errorf("%w; the rollout to v%d goes on, with the overrides stored", err, v)
	}
	if err != nil && (v == 0 || c.Release().Version != v) {
		// No release was made (a full disk, a bad stored config, a refused
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
	if _, err := c.o.Writer.UpdateEnvOverrides(c.cfg.Name, reset, drop); err != nil {
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

// releaseEnv is the environment of a release made from cfg, a
// configuration loaded on this host (shoal up's first release): its env
// resolved here with the stored overrides merged over it.
func (c *Controller) releaseEnv(cfg *config.App) (config.Env, error) {
	env, err := cfg.Env(c.lookupEnv())
	if err != nil {
		return nil, err
	}
	return c.withOverrides(env)
}

// lookupEnv resolves run.env_from_host for a configuration loaded here.
func (c *Controller) lookupEnv() func(string) (string, bool) {
	if c.o.LookupEnv != nil {
		return c.o.LookupEnv
	}
	return os.LookupEnv
}

// withOverrides returns env with the stored `shoal env` overrides merged
// over it.
func (c *Controller) withOverrides(env config.Env) (config.Env, error) {
	over, err := c.o.Store.EnvOverrides(c.cfg.Name)
	if err != nil {
		return nil, err
	}
	return mergeEnv(env, envFromStore(over)), nil
}

// checkSentEnv checks an environment sent with a deploy and returns it
// sorted: names as checkEnvName wants them (ROOT_URL, which shoal.yaml
// sets, allowed), each once, values without NUL bytes. Its error wraps
// ErrInvalidEnv, lists every problem and never contains a value.
func checkSentEnv(vs []api.EnvVar) (config.Env, error) {
	var errs []error
	seen := map[string]bool{}
	for _, v := range vs {
		switch {
		case v.Name == "ROOT_URL":
		case checkEnvName(v.Name) != nil:
			errs = append(errs, fmt.Errorf("sent env: %w", checkEnvName(v.Name)))
			continue
		}
		if seen[v.Name] {
			errs = append(errs, fmt.Errorf("%w: sent env: %s is set twice", ErrInvalidEnv, v.Name))
		}
		seen[v.Name] = true
		if strings.ContainsRune(v.Value, 0) {
			errs = append(errs, fmt.Errorf("%w: sent env: the value of %s contains a NUL byte", ErrInvalidEnv, v.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return mergeEnv(nil, envFromStore(vs)), nil
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

// maxBuildFailure bounds the reason of a build failure a deployer reports.
const maxBuildFailure = 4 << 10

// RecordBuildFailure records a build that failed where `shoal deploy`
// ran (it builds there, so the daemon would not know of it otherwise) as
// a "build" event, as a failed build of `shoal up` is: "build failed:
// <reason>", with who deployed. The reason comes redacted by the
// deployer; the values of the secret env overrides kept here are
// redacted again, and an over-long reason is cut. It returns the store's
// error when the event cannot be written (never dropped silently).
func (c *Controller) RecordBuildFailure(reason, by string) error {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return errors.New("record build failure: no reason given")
	}
	if len(reason) > maxBuildFailure {
		reason = strings.ToValidUTF8(reason[:maxBuildFailure], "") + " ..."
	}
	if vs, err := c.o.Store.EnvOverrides(c.cfg.Name); err == nil {
		reason = envFromStore(vs).Redact(reason)
	}
	if by != "" {
		reason += " (shoal deploy by " + by + ")"
	}
	return c.events.record(api.Event{Type: "build", Reason: "build failed: " + reason})
}

// buildSpec is how cfg's app is built and packed (config.App.BuildSpec,
// which `shoal deploy` uses too); log receives the build command's output
// (nil discards it).
func buildSpec(cfg *config.App, log io.Writer) (release.BuildSpec, error) {
	return cfg.BuildSpec(log)
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
