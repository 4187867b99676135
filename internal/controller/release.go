package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/store"
)

// prepare builds the artifact if its source changed, chooses the release
// to run (the stored current one when neither artifact nor run
// configuration changed, else a new one), restores the desired count, and
// prunes old releases.
func (c *Controller) prepare(ctx context.Context) error {
	cfg := c.cfg
	lookup := c.o.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	env, err := cfg.Env(lookup)
	if err != nil {
		return fmt.Errorf("resolve env: %w", err)
	}
	c.mu.Lock()
	c.env = env
	c.mu.Unlock()

	spec := release.BuildSpec{Dir: cfg.Dir, Exclude: buildExclude(cfg)}
	if c.o.BuildLog != nil {
		// The build inherits shoal's environment, which may hold secrets
		// (run.env_from_host): its output is redacted like everything else.
		rw := &redactWriter{w: c.o.BuildLog, env: env}
		defer rw.Flush()
		spec.Log = rw
	}
	if cfg.Build != nil {
		spec.Command = cfg.Build.Command
		out, err := filepath.Rel(cfg.Dir, cfg.OutputDir())
		if err != nil {
			return fmt.Errorf("build output: %w", err)
		}
		spec.Output = out
		for k, v := range cfg.Build.Env {
			spec.Env = append(spec.Env, k+"="+v)
		}
		sort.Strings(spec.Env)
	}
	start := c.now()
	art, built, err := c.o.Artifacts.BuildOnce(ctx, spec)
	if err != nil {
		return fmt.Errorf("build: %s", env.Redact(err.Error()))
	}
	if built {
		c.events.add(Event{Type: "build", Reason: fmt.Sprintf("built artifact %s in %s", short(art.Digest), c.now().Sub(start).Round(time.Millisecond))})
	}
	c.log.Info("artifact ready", "digest", art.Digest, "built", built)

	fp := cfg.Fingerprint(env)
	app := cfg.Name
	group, found, err := c.o.Store.GetGroup(app)
	if err != nil {
		return err
	}
	var cur store.Release
	if found && group.Release != 0 {
		cur, err = c.o.Store.GetRelease(app, group.Release)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	oldVersion := cur.Version // 0: no usable stored release
	switch {
	case cur.Version != 0 && cur.Digest == art.Digest && cur.ConfigFingerprint == fp:
		c.events.add(Event{Type: "release", Release: cur.Version,
			Reason: fmt.Sprintf("running stored release v%d: artifact and run configuration unchanged", cur.Version)})
	default:
		change, why := store.ChangeInitial, "first release"
		if cur.Version != 0 {
			change, why = store.ChangeConfig, fmt.Sprintf("run configuration changed since v%d", cur.Version)
			if cur.Digest != art.Digest {
				change, why = store.ChangeCode, fmt.Sprintf("artifact changed since v%d", cur.Version)
			}
		}
		rel := store.Release{App: app, Digest: art.Digest, Command: cfg.Run.Command, Env: storeEnv(env),
			ConfigFingerprint: fp, Change: change}
		if cur, err = c.o.Store.PutRelease(rel); err != nil {
			return err
		}
		c.events.add(Event{Type: "release", Release: cur.Version,
			Reason: fmt.Sprintf("made release v%d (%s): %s", cur.Version, short(art.Digest), why)})
	}

	desired := cfg.Group.Desired
	if found {
		desired = group.Desired // `shoal scale` survives restarts
	}
	desired = min(max(desired, cfg.Group.Min), cfg.Group.Max)
	group = store.Group{App: app, Release: oldVersion, Min: cfg.Group.Min, Max: cfg.Group.Max, Desired: desired,
		AutoscalePaused: group.AutoscalePaused}
	if err := c.o.Store.PutGroup(group); err != nil {
		return err
	}
	if group.Release != cur.Version {
		if err := c.o.Store.Activate(app, cur.Version, store.ReleaseSuperseded); err != nil {
			return err
		}
		group.Release = cur.Version
		cur.Status = store.ReleaseActive
	}
	c.mu.Lock()
	c.group, c.current = group, cur
	c.mu.Unlock()

	c.prune(app)
	return nil
}

// prune keeps the last keep_releases releases and their artifacts.
func (c *Controller) prune(app string) {
	dropped, err := c.o.Store.PruneReleases(app, max(c.cfg.KeepReleases, 1))
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
	var keep []string
	for _, r := range kept {
		keep = append(keep, r.Digest)
	}
	gone, err := c.o.Artifacts.Prune(keep)
	if err != nil {
		c.log.Warn("prune artifacts", "error", err)
	}
	c.events.add(Event{Type: "release", Reason: fmt.Sprintf("pruned %d old releases and %d artifacts (keep_releases %d)",
		len(dropped), len(gone), c.cfg.KeepReleases)})
}

func storeEnv(env config.Env) []store.EnvVar {
	out := make([]store.EnvVar, len(env))
	for i, v := range env {
		out[i] = store.EnvVar{Name: v.Name, Value: v.Value, Secret: v.Secret}
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

// ReleaseInfo is one release as the admin API shows it: secrets redacted.
type ReleaseInfo struct {
	Version   int       `json:"version"`
	Digest    string    `json:"digest"`
	Command   string    `json:"command"`
	CreatedAt time.Time `json:"created_at"`
	Status    string    `json:"status"`
	Change    string    `json:"change,omitempty"`
	Env       []string  `json:"env,omitempty"`
	Current   bool      `json:"current"`
}

// Releases returns the stored releases of the app, newest first, with
// secret values redacted.
func (c *Controller) Releases() ([]ReleaseInfo, error) {
	rels, err := c.o.Store.Releases(c.cfg.Name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	curV := c.current.Version
	c.mu.Unlock()
	out := make([]ReleaseInfo, 0, len(rels))
	for _, r := range rels {
		r = r.Redacted()
		ri := ReleaseInfo{Version: r.Version, Digest: r.Digest, Command: r.Command, CreatedAt: r.CreatedAt,
			Status: string(r.Status), Change: r.Change, Current: r.Version == curV}
		for _, v := range r.Env {
			ri.Env = append(ri.Env, v.Name+"="+v.Value)
		}
		out = append(out, ri)
	}
	return out, nil
}

// Events returns up to limit events of the app with a sequence number
// above after, oldest first (limit <= 0: 100).
func (c *Controller) Events(after uint64, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 100
	}
	out := []Event{}
	// Events of other apps share the sequence; page until limit is met.
	for range 100 {
		evs, err := c.o.Store.Events(c.cfg.Name, after, limit-len(out))
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			out = append(out, fromStoreEvent(e))
		}
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

// storeEvents writes a batch to the store, in order.
func (c *Controller) storeEvents(evs []Event) error {
	var errs []error
	for _, e := range evs {
		se := store.Event{Time: e.Time, App: c.cfg.Name, Instance: e.Instance, Release: e.Release, Kind: e.Type, Reason: e.Reason}
		if e.From != "" || e.State != "" || e.Addr != "" {
			se.Fields = map[string]string{}
			for k, v := range map[string]string{"from": e.From, "state": e.State, "addr": e.Addr} {
				if v != "" {
					se.Fields[k] = v
				}
			}
		}
		if _, err := c.o.Store.AppendEvent(se); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func fromStoreEvent(e store.Event) Event {
	return Event{Seq: e.Seq, Time: e.Time, Type: e.Kind, Instance: e.Instance, Release: e.Release,
		From: e.Fields["from"], State: e.Fields["state"], Addr: e.Fields["addr"], Reason: e.Reason}
}
