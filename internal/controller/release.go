package controller

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
)

// prepare chooses the release the group runs from this start, restores
// the desired count, and prunes old releases.
//
// A restart resumes the stored active release as it was made: its
// artifact, command and environment (shoal.yaml's env of that time with
// the `shoal env` overrides and secrets merged in). It builds nothing and
// makes no release. Source or run configuration in the app folder that
// differs from it is reported (an event, a warning, StartNotes), never
// deployed by itself: only Deploy, SetEnv and Rollback make releases and
// roll them out, with their hooks and health gate. Only the very first
// start, when no release is stored yet, builds and makes one (v1); an app
// whose configuration was sent (config.App.Sent: `shoal server`, no app
// folder on this host) builds nothing and starts with no release and
// desired 0 until its first Deploy makes v1.
func (c *Controller) prepare(ctx context.Context) error {
	cfg := c.cfg
	app := cfg.Name
	group, found, err := c.o.Store.GetGroup(app)
	if err != nil {
		return fmt.Errorf("read group: %w", err)
	}
	var cur api.Release
	switch {
	case found && group.Release != 0:
		if cur, err = c.resumeActive(ctx, group.Release); err != nil {
			return err
		}
	case cfg.Sent():
		// No folder to build: the app waits for its first Deploy.
		c.events.add(api.Event{Type: "release", Reason: "no release yet: the first shoal deploy makes v1"})
	default:
		if cur, err = c.firstRelease(ctx); err != nil {
			return err
		}
	}

	desired := cfg.Group.Desired
	if found {
		desired = group.Desired // `shoal scale` survives restarts
	}
	desired = min(max(desired, cfg.Group.Min), cfg.Group.Max)
	minimum := cfg.Group.Min
	if cur.Version == 0 {
		// Nothing to run until Deploy makes v1 (deploy.go), which sets
		// group.min and the desired count.
		desired, minimum = 0, 0
	}
	group = api.Group{App: app, Release: group.Release, Min: minimum, Max: cfg.Group.Max, Desired: desired,
		AutoscalePaused: group.AutoscalePaused}
	if err := c.o.Writer.PutGroup(group); err != nil {
		return fmt.Errorf("store group: %w", err)
	}
	if group.Release != cur.Version && cur.Version != 0 {
		if err := c.o.Writer.Activate(app, cur.Version, api.ReleaseSuperseded); err != nil {
			return err
		}
		group.Release = cur.Version
		cur.Status = api.ReleaseActive
	}
	c.mu.Lock()
	c.group, c.current = group, cur
	c.mu.Unlock()

	c.prune(app, c.keepReleases(cur))
	return nil
}

// firstRelease builds the app folder and makes the app's first release,
// for a start that finds no active release stored.
func (c *Controller) firstRelease(ctx context.Context) (api.Release, error) {
	cfg := c.cfg
	deployed, err := cfg.Env(c.lookupEnv())
	if err != nil {
		return api.Release{}, fmt.Errorf("resolve env: %w", err)
	}
	env, err := c.withOverrides(deployed)
	if err != nil {
		return api.Release{}, fmt.Errorf("resolve env: %w", err)
	}
	c.mu.Lock()
	c.env = env
	c.mu.Unlock()
	log := c.o.BuildLog
	if log == nil {
		log = io.Discard
	}
	art, built, err := c.buildArtifact(ctx, cfg, env, log)
	if err != nil {
		return api.Release{}, err
	}
	c.log.Info("artifact ready", "digest", art.Digest, "built", built)
	rel, err := c.o.Writer.PutRelease(api.Release{App: cfg.Name, Digest: art.Digest, Command: cfg.Run.Command,
		CPU: cfg.Run.CPU, Memory: int64(cfg.Run.Memory), Runtime: cfg.Runtime, Port: cfg.Run.Port,
		Env: storeEnv(env), ConfigFingerprint: cfg.Fingerprint(env), Change: api.ChangeInitial,
		Config: cfg.Text(), ConfigFile: cfg.File, DeployedEnv: storeEnv(deployed)})
	if err != nil {
		return api.Release{}, fmt.Errorf("make release: %w", err)
	}
	c.events.add(api.Event{Type: "release", Release: rel.Version,
		Reason: fmt.Sprintf("made release v%d (%s): first release", rel.Version, short(art.Digest))})
	return rel, nil
}

// resumeActive returns the stored active release v, ready to run as it
// is, and reports how the app folder differs from it. It fails when the
// release or its artifact is gone: rebuilding from the folder could run
// code that nobody deployed.
func (c *Controller) resumeActive(ctx context.Context, v int) (api.Release, error) {
	cur, err := c.o.Store.GetRelease(c.cfg.Name, v)
	if err != nil {
		return api.Release{}, fmt.Errorf("the group's active release v%d cannot be read: %w", v, err)
	}
	env := envFromStore(cur.Env)
	if !c.o.Artifacts.Has(cur.Digest) {
		if err := c.rebuildActive(ctx, cur, env); err != nil {
			return api.Release{}, err
		}
	}
	c.mu.Lock()
	c.env = env
	c.mu.Unlock()
	c.events.add(api.Event{Type: "release", Release: v,
		Reason: fmt.Sprintf("resuming the active release v%d (%s) as stored: no build, no new release", v, short(cur.Digest))})
	c.log.Info("resuming the active release", "release", v, "digest", cur.Digest)
	if c.cfg.Sent() {
		return cur, nil // no app folder here to compare with
	}
	for _, note := range c.driftNotes(ctx, cur) {
		note = env.Redact(note)
		c.events.add(api.Event{Type: "release", Release: v, Reason: note})
		c.log.Warn(note, "release", v)
		c.mu.Lock()
		c.notes = append(c.notes, note)
		c.mu.Unlock()
	}
	return cur, nil
}

// rebuildActive stores again the missing artifact of the active release
// cur (deleted, or moved aside as corrupt), only when the app folder's
// source is the one it was built from: the build index says this source
// packs to cur's digest, and the rebuild must produce exactly that digest
// (a content-addressed artifact, so the same bytes). Otherwise it fails
// naming the artifact: rebuilding a changed folder would run code that
// nobody deployed.
func (c *Controller) rebuildActive(ctx context.Context, cur api.Release, env config.Env) error {
	v, path := cur.Version, c.o.Artifacts.Path(cur.Digest)
	missing := fmt.Sprintf("the active release v%d cannot run: its artifact %s is missing (%s)", v, cur.Digest, path)
	way := `run "shoal rollback" to a kept release, or "shoal deploy" to release the folder as it is`
	if c.cfg.Sent() {
		// The configuration was sent by shoal deploy: the source is on the
		// deployer's machine, not here.
		return fmt.Errorf("%s; run \"shoal deploy\" from the app's folder to upload it again, or \"shoal rollback\" to a kept release", missing)
	}
	spec, err := buildSpec(c.cfg, nil)
	if err != nil {
		return fmt.Errorf("%s and the source cannot be compared with it: %v; %s", missing, err, way)
	}
	digest, found, err := c.o.Artifacts.Lookup(ctx, spec)
	switch {
	case err != nil:
		return fmt.Errorf("%s and the source cannot be compared with it: %v; %s", missing, err, way)
	case !found || digest != cur.Digest:
		return fmt.Errorf("%s, and the app folder's source differs from the one it was built from, so shoal does not rebuild it; %s", missing, way)
	}
	log := c.o.BuildLog
	if log == nil {
		log = io.Discard
	}
	art, _, err := c.buildArtifact(ctx, c.cfg, env, log)
	if err != nil {
		return fmt.Errorf("%s; rebuilding it from the unchanged source failed: %w", missing, err)
	}
	if art.Digest != cur.Digest {
		return fmt.Errorf("%s; the unchanged source rebuilt to %s, not to the release's digest (is the build reproducible?); %s", missing, art.Digest, way)
	}
	c.events.add(api.Event{Type: "build", Release: v,
		Reason: fmt.Sprintf("rebuilt the missing artifact %s of v%d from the unchanged source", short(cur.Digest), v)})
	c.log.Warn("rebuilt the missing artifact of the active release", "release", v, "digest", cur.Digest)
	return nil
}

// driftNotes compares the app folder with release cur: its source, via the
// build index (what BuildOnce would return, without building), and
// shoal.yaml's run configuration with the env overrides merged, via its
// fingerprint. It returns what differs, in words for the operator.
func (c *Controller) driftNotes(ctx context.Context, cur api.Release) []string {
	var notes []string
	source := false
	if spec, err := buildSpec(c.cfg, nil); err != nil {
		notes = append(notes, fmt.Sprintf("cannot compare the source with the active release v%d: %v", cur.Version, err))
	} else if digest, found, err := c.o.Artifacts.Lookup(ctx, spec); err != nil {
		notes = append(notes, fmt.Sprintf("cannot compare the source with the active release v%d: %v", cur.Version, err))
	} else {
		source = !found || digest != cur.Digest
	}
	runConfig := false
	if env, err := c.releaseEnv(c.cfg); err != nil {
		notes = append(notes, fmt.Sprintf("cannot compare shoal.yaml's run configuration with the active release v%d: %v", cur.Version, err))
	} else {
		runConfig = c.cfg.Fingerprint(env) != cur.ConfigFingerprint
	}
	switch {
	case source && runConfig:
		notes = append(notes, fmt.Sprintf(`the source and shoal.yaml's run configuration differ from the active release v%d; run "shoal deploy" to release them`, cur.Version))
	case source:
		notes = append(notes, fmt.Sprintf(`the source differs from the active release v%d; run "shoal deploy" to release it`, cur.Version))
	case runConfig:
		notes = append(notes, fmt.Sprintf(`shoal.yaml's run configuration (command, env, cpu or memory) differs from the active release v%d; "shoal deploy" makes a config-only release of it`, cur.Version))
	}
	return notes
}

// StartNotes returns what the last start found different between the app
// folder and the active release it resumed (see prepare), one sentence
// each; none when they agree or on a first start. Valid once Run has
// prepared the release (after Ready).
func (c *Controller) StartNotes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.notes)
}

// abandonPending marks failed every pending release but keep: a release
// found pending at a start belongs to a deploy that ended without
// recording its outcome (shoal stopped between making the release and
// storing its rollout), so it never served and never will.
func (c *Controller) abandonPending(keep int) {
	rels, err := c.o.Store.Releases(c.cfg.Name)
	if err != nil {
		c.log.Warn("list releases", "error", err)
		return
	}
	for _, r := range rels {
		if r.Status != api.ReleasePending || r.Version == keep {
			continue
		}
		if err := c.events.apply(fmt.Sprintf("release v%d failed", r.Version), func() error {
			return c.o.Writer.SetReleaseStatus(c.cfg.Name, r.Version, api.ReleaseFailed)
		}); err != nil {
			c.log.Error("mark abandoned release failed", "release", r.Version, "error", err)
		}
		c.events.add(api.Event{Type: "release", Release: r.Version,
			Reason: fmt.Sprintf("v%d never served: its deploy was abandoned before it was rolled out; marked failed", r.Version)})
	}
}

// keepReleases is the keep_releases of the configuration release r was
// made from (the deploy that made it: a deploy may change it), or of the
// configuration the controller started with for a release that kept none
// or whose configuration cannot be read back.
func (c *Controller) keepReleases(r api.Release) int {
	cfg, _, err := c.releaseSource(r)
	if err != nil {
		return c.cfg.KeepReleases
	}
	return cfg.KeepReleases
}

// prune keeps the last keep releases (keep_releases of the configuration
// now serving, see keepReleases) and their artifacts.
func (c *Controller) prune(app string, keep int) {
	dropped, err := c.o.Writer.PruneReleases(app, max(keep, 1))
	if err != nil {
		c.log.Warn("prune releases", "error", err)
		return
	}
	if len(dropped) == 0 {
		return
	}
	kept, err := c.o.Store.Releases(app)
	if err != nil {
		c.log.Warn("prune releases", "error", err)
		return
	}
	digests := c.up.Recent() // deploy_artifacts.go: their deploys may follow
	if c.o.KeepArtifacts != nil {
		digests = append(digests, c.o.KeepArtifacts()...) // other apps' (shoal server)
	}
	for _, r := range kept {
		digests = append(digests, r.Digest)
	}
	gone, err := c.o.Artifacts.Prune(digests)
	if err != nil {
		c.log.Warn("prune artifacts", "error", err)
	}
	c.events.add(api.Event{Type: "release", Reason: fmt.Sprintf("pruned %d old releases and %d artifacts (keep_releases %d)",
		len(dropped), len(gone), keep)})
}

func storeEnv(env config.Env) []api.EnvVar {
	out := make([]api.EnvVar, len(env))
	for i, v := range env {
		out[i] = api.EnvVar{Name: v.Name, Value: v.Value, Secret: v.Secret}
	}
	return out
}

// short abbreviates a digest for messages.
func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// Releases returns the stored releases of the app, newest first, with
// secret values redacted.
func (c *Controller) Releases() ([]api.ReleaseInfo, error) {
	rels, err := c.o.Store.Releases(c.cfg.Name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	curV := c.current.Version
	c.mu.Unlock()
	out := make([]api.ReleaseInfo, 0, len(rels))
	prev, _ := c.previousRelease(rels, curV)
	for _, r := range rels {
		out = append(out, r.Info(r.Version == curV, r.Version == prev.Version))
	}
	return out, nil
}

// Events returns up to limit events of the app with a sequence number
// above after, oldest first (limit <= 0: 100).
func (c *Controller) Events(after uint64, limit int) ([]api.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	out := []api.Event{}
	// Events of other apps share the sequence; page until limit is met.
	for range 100 {
		evs, err := c.o.Store.Events(c.cfg.Name, after, limit-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
		if len(evs) == 0 || len(out) >= limit {
			break
		}
		after = evs[len(evs)-1].Seq
	}
	return out, nil
}

// SubscribeEvents returns a channel that receives a value after new
// events are stored (several may coalesce into one), and a function that
// unsubscribes. Use it with Events to follow the log.
func (c *Controller) SubscribeEvents() (<-chan struct{}, func()) { return c.events.subscribe() }

// storeEvents writes a batch to the store, in order, in one transaction:
// all of it or, with an error, none.
func (c *Controller) storeEvents(evs []api.Event) error {
	_, err := c.o.Writer.AppendEvents(c.cfg.Name, evs)
	return err
}
