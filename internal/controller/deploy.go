package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/rollout"
)

// Deploy errors; the admin API maps them to statuses.
var (
	// ErrInvalidConfig wraps the problems of a shoal.yaml that a deploy
	// was sent (or a release stored) and that it rejected; nothing
	// changed.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrNoChange means the artifact and the run configuration equal the
	// current release's: no release was made.
	ErrNoChange = errors.New("nothing to deploy")
	// ErrNoRollout is returned by AbortDeploy when no rollout runs.
	ErrNoRollout = errors.New("no rollout in progress")
	// ErrUnknownRelease means the release to roll back to does not exist,
	// or its artifact is gone.
	ErrUnknownRelease = errors.New("unknown release")
	// ErrUnknownArtifact means a deploy names an artifact this shoal does
	// not hold: it must be uploaded first (PutArtifact).
	ErrUnknownArtifact = errors.New("unknown artifact")
)

// DeployRequest asks the controller for a new release of the app and a
// rollout to it. It carries everything the release is made from, so the
// controller reads nothing from the deployer's folder: `shoal deploy`
// loads shoal.yaml, resolves the environment and builds the artifact where
// it runs, uploads the artifact (PutArtifact) and sends the rest.
type DeployRequest struct {
	// Config is the configuration to deploy, as sent (ParseConfig, or
	// config.Load for a test or an embedder). Required. The release keeps
	// its text (config.App.Text) and file name.
	Config *config.App
	// Env is the release's environment as resolved where Config was
	// loaded (config.App.Env there), secrets marked; the `shoal env`
	// overrides are merged over it. The release keeps it as deployed.
	Env []api.EnvVar
	// Digest is the artifact to run, which the controller must hold
	// already (ErrUnknownArtifact otherwise). Empty makes a config-only
	// release on the current release's artifact.
	Digest string
	// Wait makes Deploy wait for another deploy of the group to end
	// instead of failing at once with a *rollout.LockedError.
	Wait bool
	// By says who deploys ("alice@laptop"), for the lock message.
	By string
	// Log receives the hooks' output and one line per step of the
	// deploy, secrets redacted; nil discards. Deploy writes to it from its
	// own goroutine only.
	Log io.Writer

	// fromCurrent makes the release from the current release's stored
	// configuration and deployed environment, read once the deploy lock
	// is held (SetEnv); Config, Env and Digest are then ignored.
	fromCurrent bool
}

// DeployError is returned by Deploy and Rollback when the rollout did
// not end with the group serving the new release: it rolled back (the
// previous release kept serving), was aborted, or failed while rolling
// back (the group is left as it is).
type DeployError struct {
	// Version is the release the rollout moved to.
	Version int
	// Progress is the rollout's final state.
	Progress rollout.Progress
	// Logs are the last output lines of the failing instance, redacted;
	// empty when the failure names no instance.
	Logs []string
}

// Error says which release the deploy was for, how it ended and why.
func (e *DeployError) Error() string {
	// "rollout", not "deploy": the CLI prints it after "shoal deploy:" or
	// "shoal rollback:".
	msg := fmt.Sprintf("rollout to v%d ended %s: %s", e.Version, e.Progress.Phase, e.Progress.Reason)
	if f := e.Progress.Failure; f != nil && !strings.Contains(msg, f.String()) {
		msg += " (" + f.String() + ")"
	}
	return msg
}

// activeDeploy is the rollout in progress; guarded by Controller.mu except
// where noted.
type activeDeploy struct {
	holder  string
	by      string    // who deploys, for the lock after a restart
	started time.Time // when the deploy began
	r       *rollout.Rollout
	rels    map[int]api.Release // From and To, with their env
	env     config.Env          // environment of To, for redaction
	done    chan struct{}       // closed once finished (statuses stored)
	// launched are the instances the rollout launched, until it has seen
	// them end.
	launched map[string]*instance
	final    rollout.Progress // set before done is closed
	// saved is the snapshot last written to the store (JSON); only the
	// loop's goroutine uses it. See deploy_persist.go.
	saved []byte
}

// deployState is the Controller's deploy bookkeeping.
type deployState struct {
	lock   rollout.Lock
	seq    int
	active *activeDeploy
}

// Rollout returns the rollout in progress, or nil when none runs. The
// result is a copy.
func (c *Controller) Rollout() *rollout.Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.dep.active
	if d == nil {
		return nil
	}
	p := d.r.Progress(c.now())
	return &p
}

// Deploy makes release vN+1 from req (its configuration, environment
// with the stored `shoal env` overrides merged over it, and artifact),
// runs the pre-deploy hooks, rolls the group to the release under the
// deploy policy, then runs the post-deploy hooks. A Deploy called while
// Run is still starting (preparing the release, adopting instances)
// waits for that, so it starts from the stored release and group. The first deploy of an
// app that has no release (config.App.Sent, see prepare) makes v1 and
// rolls the group out from zero instances to its desired count; it needs
// an artifact. Hooks run here, in a
// fresh unpack of the release's artifact (hooks.go). It blocks until the
// rollout ends or ctx ends (the rollout goes on without the caller). It
// returns the new version, and:
//   - a *rollout.LockedError when another deploy holds the group;
//   - ErrInvalidConfig (wrapped, every problem listed) for a missing or
//     bad configuration, a renamed app or a change that needs a restart;
//     ErrInvalidEnv (wrapped) for a bad sent environment;
//     ErrUnknownArtifact when Digest is not held; ErrNoChange when
//     nothing changed;
//   - a *hooks.HookError (wrapped) when a pre-deploy hook fails: no
//     release is made;
//   - a *DeployError when the rollout went back to the previous release.
func (c *Controller) Deploy(ctx context.Context, req DeployRequest) (int, error) {
	if !c.running.Load() {
		return 0, ErrNotRunning
	}
	if err := c.awaitStarted(ctx); err != nil {
		return 0, err
	}
	if req.Config == nil && !req.fromCurrent {
		return 0, fmt.Errorf("%w: no configuration was sent with the deploy", ErrInvalidConfig)
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	app := c.cfg.Name
	next, err := c.o.Store.NextRelease(app)
	if err != nil {
		return 0, err
	}
	holder, err := c.lockDeploy(ctx, next, req.By, req.Wait)
	if err != nil {
		return 0, err
	}
	started := false
	defer func() {
		if !started {
			c.dep.lock.Release(app, holder)
		}
	}()

	cur := c.Release()
	cfg, sent, digest := req.Config, config.Env(nil), req.Digest
	if req.fromCurrent {
		if cfg, sent, err = c.releaseSource(cur); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		digest = ""
	} else if sent, err = checkSentEnv(req.Env); err != nil {
		return 0, err
	}
	if cfg.Name != app {
		return 0, fmt.Errorf("%w: app renamed from %q to %q; a running group keeps its name", ErrInvalidConfig, app, cfg.Name)
	}
	if err := checkReloadable(c.cfg, cfg); err != nil { // deploy_reload.go
		return 0, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if note := desiredNote(c.cfg, cfg); note != "" {
		fmt.Fprintln(log, note)
	}
	env, err := c.withOverrides(sent)
	if err != nil {
		return 0, err
	}
	change := api.ChangeConfig
	switch {
	case cur.Version == 0 && digest == "":
		return 0, fmt.Errorf("%w: the app has no release yet; its first deploy needs an artifact (not --config-only)", ErrUnknownArtifact)
	case cur.Version == 0 && c.unheld(digest) != nil:
		return 0, c.unheld(digest)
	case cur.Version == 0:
		change = api.ChangeInitial
	case digest == "":
		digest = cur.Digest
		fmt.Fprintf(log, "config-only: reusing artifact %s of v%d, no build\n", short(cur.Digest), cur.Version)
	case c.unheld(digest) != nil:
		return 0, c.unheld(digest)
	case digest != cur.Digest:
		change = api.ChangeCode
	}
	fp := cfg.Fingerprint(env)
	if digest == cur.Digest && fp == cur.ConfigFingerprint {
		return cur.Version, fmt.Errorf("%w: v%d already runs this artifact and run configuration", ErrNoChange, cur.Version)
	}
	if err := c.runHooks(ctx, "pre_deploy", digest, cfg, env, cfg.Deploy.Hooks.PreDeploy, log); err != nil { // hooks.go
		c.events.add(api.Event{Type: "deploy", Release: cur.Version, Reason: env.Redact("deploy stopped: " + err.Error())})
		return 0, fmt.Errorf("deploy stopped, nothing changed: %w", err)
	}
	// A release made while the records of earlier ones wait (a full
	// disk; events.go: apply) could not be rolled out: refuse it now.
	if err := c.events.sync(); err != nil {
		return 0, fmt.Errorf("make release: the outcome of earlier changes cannot be stored yet: %w", err)
	}
	rel, err := c.o.Writer.PutRelease(api.Release{App: app, Digest: digest, Command: cfg.Run.Command,
		CPU: cfg.Run.CPU, Memory: int64(cfg.Run.Memory), Runtime: cfg.Runtime, Port: cfg.Run.Port,
		Env: storeEnv(env), ConfigFingerprint: fp, Change: change,
		Config: cfg.Text(), ConfigFile: cfg.File, DeployedEnv: storeEnv(sent)})
	if err != nil {
		return 0, fmt.Errorf("make release: %w", err)
	}
	why := fmt.Sprintf("made release v%d (%s, %s change) from v%d", rel.Version, short(digest), change, cur.Version)
	c.events.add(api.Event{Type: "release", Release: rel.Version, Reason: why})
	fmt.Fprintln(log, why)

	if cur.Version == 0 {
		// The first release: the group grows from zero to the configured
		// count (group.desired within min and max) as the rollout launches.
		if err := c.setFirstDesired(cfg); err != nil {
			return rel.Version, err
		}
	}
	d, err := c.startRollout(holder, req.By, cur, rel, env, cfg.RolloutPolicy())
	if err != nil {
		// It never rolls out: failed, not left pending for the next start.
		if ferr := c.events.apply(fmt.Sprintf("release v%d failed", rel.Version), func() error {
			return c.o.Writer.SetReleaseStatus(app, rel.Version, api.ReleaseFailed)
		}); ferr != nil {
			c.log.Error("mark release failed", "release", rel.Version, "error", ferr)
		}
		c.events.add(api.Event{Type: "release", Release: rel.Version, Reason: fmt.Sprintf("v%d failed: its rollout could not start: %v", rel.Version, err)})
		return rel.Version, err
	}
	started = true
	if err := c.awaitRollout(ctx, d, rel.Version); err != nil {
		return rel.Version, err
	}
	if err := c.runHooks(ctx, "post_deploy", digest, cfg, env, cfg.Deploy.Hooks.PostDeploy, log); err != nil {
		c.events.add(api.Event{Type: "deploy", Release: rel.Version, Reason: env.Redact("post-deploy hook failed: " + err.Error())})
		return rel.Version, fmt.Errorf("v%d serves, but a post-deploy hook failed: %w", rel.Version, err)
	}
	c.prune(app, cfg.KeepReleases) // the deploy's: it may have changed keep_releases
	return rel.Version, nil
}

// setFirstDesired stores cfg's desired count (within group.min and
// group.max) as the group's, for the rollout of an app's first release.
func (c *Controller) setFirstDesired(cfg *config.App) error {
	n := min(max(cfg.Group.Desired, cfg.Group.Min), cfg.Group.Max)
	if err := c.takeGroupWrite(context.Background()); err != nil {
		return err
	}
	defer c.giveGroupWrite()
	g, err := c.o.Writer.UpdateGroup(c.cfg.Name, func(g *api.Group) error {
		g.Min, g.Max, g.Desired = cfg.Group.Min, cfg.Group.Max, n
		return nil
	})
	if err != nil {
		return fmt.Errorf("store the first release's desired count: %w", err)
	}
	c.mu.Lock()
	c.group.Min, c.group.Max, c.group.Desired = g.Min, g.Max, g.Desired
	c.mu.Unlock()
	return nil
}

// ParseConfig parses text, a shoal.yaml sent from the machine where it was
// the file named file (config.ParseSent: no file of this host is read),
// for a DeployRequest. Its error wraps ErrInvalidConfig and lists every
// problem with file:line:col.
func ParseConfig(file string, text []byte) (*config.App, error) {
	cfg, err := config.ParseSent(file, text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return cfg, nil
}

// releaseSource returns what release r was made from: its stored
// configuration and environment as deployed (before the overrides). A
// release made before releases kept them falls back to the configuration
// shoal up started with, its environment resolved as at a first start.
func (c *Controller) releaseSource(r api.Release) (*config.App, config.Env, error) {
	if r.Config == "" {
		env, err := c.cfg.Env(c.lookupEnv())
		return c.cfg, env, err
	}
	cfg, err := config.ParseSent(r.ConfigFile, []byte(r.Config))
	if err != nil {
		return nil, nil, fmt.Errorf("the configuration stored with v%d: %w", r.Version, err)
	}
	return cfg, envFromStore(r.DeployedEnv), nil
}

// Rollback rolls the group back to release version from its kept
// artifact, without a build or hooks; version 0 means the newest release
// older than the current one that served (Release.HasServed) and whose
// artifact is kept: a release that never served is not a default target,
// though it can be named. It blocks like Deploy and returns the same
// errors, plus ErrUnknownRelease (the release never existed, was pruned,
// or its artifact is gone; the message lists the possible targets) and
// ErrNoChange when the group already runs version.
func (c *Controller) Rollback(ctx context.Context, version int) error {
	if !c.running.Load() {
		return ErrNotRunning
	}
	if err := c.awaitStarted(ctx); err != nil {
		return err
	}
	app := c.cfg.Name
	cur := c.Release()
	target, err := c.rollbackTarget(cur, version)
	if err != nil {
		return err
	}
	holder, err := c.lockDeploy(ctx, target.Version, "rollback", false)
	if err != nil {
		return err
	}
	env := envFromStore(target.Env)
	policy := c.cfg.RolloutPolicy()
	if cfg, _, err := c.releaseSource(cur); err == nil {
		policy = cfg.RolloutPolicy() // the policy the current release was deployed with
	}
	c.events.add(api.Event{Type: "release", Release: target.Version,
		Reason: fmt.Sprintf("rollback from v%d to v%d (artifact %s, no build)", cur.Version, target.Version, short(target.Digest))})
	d, err := c.startRollout(holder, "rollback", cur, target, env, policy)
	if err != nil {
		c.dep.lock.Release(app, holder)
		return err
	}
	return c.awaitRollout(ctx, d, target.Version)
}

// rollbackTarget finds the release to roll back to (see Rollback).
func (c *Controller) rollbackTarget(cur api.Release, version int) (api.Release, error) {
	if version == cur.Version {
		return api.Release{}, fmt.Errorf("%w: the group already runs v%d", ErrNoChange, version)
	}
	rels, err := c.o.Store.Releases(c.cfg.Name) // newest first
	if err != nil {
		return api.Release{}, fmt.Errorf("list releases: %w", err)
	}
	if version == 0 {
		if r, ok := c.previousRelease(rels, cur.Version); ok {
			return r, nil
		}
		return api.Release{}, fmt.Errorf("%w: no release before v%d that served is kept; %s", ErrUnknownRelease, cur.Version, c.rollbackChoices(rels, cur))
	}
	for _, r := range rels {
		if r.Version != version {
			continue
		}
		if !c.o.Artifacts.Has(r.Digest) {
			return api.Release{}, fmt.Errorf("%w v%d: its artifact %s is gone; %s", ErrUnknownRelease, version, short(r.Digest), c.rollbackChoices(rels, cur))
		}
		return r, nil
	}
	next, err := c.o.Store.NextRelease(c.cfg.Name)
	if err != nil {
		return api.Release{}, fmt.Errorf("list releases: %w", err)
	}
	if version >= next {
		return api.Release{}, fmt.Errorf("%w v%d: it does not exist (the newest release is v%d); %s", ErrUnknownRelease, version, next-1, c.rollbackChoices(rels, cur))
	}
	return api.Release{}, fmt.Errorf("%w v%d: it was pruned (keep_releases %d); %s", ErrUnknownRelease, version, c.keepReleases(cur), c.rollbackChoices(rels, cur))
}

// previousRelease returns the release of rels (newest first) that a
// rollback without a version goes to: the newest one older than current
// that served and whose artifact is kept.
func (c *Controller) previousRelease(rels []api.Release, current int) (api.Release, bool) {
	for _, r := range rels {
		if r.Version < current && r.HasServed() && c.o.Artifacts.Has(r.Digest) {
			return r, true
		}
	}
	return api.Release{}, false
}

// rollbackChoices lists the releases of rels that Rollback can go to
// (kept, with their artifact, not cur), for an error message.
func (c *Controller) rollbackChoices(rels []api.Release, cur api.Release) string {
	var vs []string
	for _, r := range rels {
		if r.Version == cur.Version || !c.o.Artifacts.Has(r.Digest) {
			continue
		}
		v := fmt.Sprintf("v%d", r.Version)
		if !r.HasServed() {
			v += " (never served)"
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return "no kept release can be rolled back to"
	}
	return "releases that can be rolled back to: " + strings.Join(vs, ", ")
}

// AbortDeploy turns the rollout in progress back to the previous release
// (launch before terminate, as a rollout). It returns at once; Deploy's
// caller sees the rollout end as aborted. ErrNoRollout when none runs.
func (c *Controller) AbortDeploy(ctx context.Context) error {
	c.mu.Lock()
	d := c.dep.active
	var err error
	if d == nil {
		err = ErrNoRollout
	} else if aerr := d.r.Abort(c.now(), "shoal deploy --abort"); aerr != nil {
		err = fmt.Errorf("abort: %w", aerr)
	}
	c.mu.Unlock()
	if err == nil {
		c.poke()
	}
	return err
}

// lockDeploy takes the group's deploy lock for a deploy of version.
func (c *Controller) lockDeploy(ctx context.Context, version int, by string, wait bool) (string, error) {
	c.mu.Lock()
	c.dep.seq++
	id := fmt.Sprintf("deploy-%d-%d", c.now().UnixNano(), c.dep.seq)
	c.mu.Unlock()
	h := rollout.Holder{ID: id, Release: version, By: by}
	var err error
	if wait {
		err = c.dep.lock.Acquire(ctx, c.cfg.Name, h)
	} else {
		err = c.dep.lock.TryAcquire(c.cfg.Name, h)
	}
	var locked *rollout.LockedError
	if err != nil && !errors.As(err, &locked) {
		return "", fmt.Errorf("wait for the deploy lock: %w", err)
	}
	return id, err // a *rollout.LockedError says what holds the lock
}

// awaitRollout waits for d to end and turns its outcome into an error.
func (c *Controller) awaitRollout(ctx context.Context, d *activeDeploy, version int) error {
	select {
	case <-d.done:
	case <-ctx.Done():
		return fmt.Errorf("deploy of v%d goes on without you: %w", version, context.Cause(ctx))
	}
	if d.final.Phase == rollout.PhaseDone {
		return nil
	}
	de := &DeployError{Version: version, Progress: d.final}
	if f := d.final.Failure; f != nil && f.InstanceID != "" {
		de.Logs = c.tailLogs(ctx, f.InstanceID, d.env)
	}
	return de
}

// tailLogs returns the last lines of an instance's output, redacted.
func (c *Controller) tailLogs(ctx context.Context, id string, env config.Env) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var b strings.Builder
	if err := c.Logs(ctx, id, 20, false, &b); err != nil {
		return []string{"(no logs: " + err.Error() + ")"}
	}
	out := strings.Split(strings.TrimRight(env.Redact(b.String()), "\n"), "\n")
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}
