package config

import (
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/rollout"
)

// AppDeploy is the deploy policy of the group (the "deploy:" section):
// how `shoal deploy`, `shoal rollback` and `shoal env set` move the group
// from one release to the next. Its defaults never reduce serving
// capacity: a new instance must be in service before an old one drains.
type AppDeploy struct {
	// MaxSurge is how many instances may run above the desired count
	// while a rollout runs, as a count ("1") or a percentage of the
	// desired count rounded up ("25%"). Default 25%, at least 1.
	MaxSurge string `yaml:"max_surge"`

	// MaxUnavailable is how many instances below the desired count may
	// be out of service during a rollout, as a count or a percentage
	// rounded down. Default 0: launch before terminate, even with one
	// instance.
	MaxUnavailable string `yaml:"max_unavailable"`

	// BatchTimeout is how long a new instance may take to come into
	// service (or stay unhealthy) before the rollout fails and returns
	// the group to the previous release. Default the larger of 5m and
	// twice health.grace; when set, it must be longer than health.grace.
	BatchTimeout Duration `yaml:"batch_timeout"`

	// MaxFailures is how many crashes of new instances make the rollout
	// fail (crash loop). Default 3.
	MaxFailures int `yaml:"max_failures"`

	// Hooks are commands run around a deploy.
	Hooks AppDeployHooks `yaml:"hooks"`
}

// AppDeployHooks are commands run by the daemon around each deploy, where
// the release runs rather than in the folder `shoal deploy` ran in: in a
// fresh unpack of the release's artifact under data_dir (removed
// afterwards), through /bin/sh -c, with the daemon's environment plus the
// release's (secrets included; their values are redacted from the output
// shown) and SHOAL_APP, SHOAL_HOOK.
type AppDeployHooks struct {
	// PreDeploy run in order before the rollout starts (after the build);
	// the first that fails stops the deploy and nothing changes. Use them
	// for database migrations.
	PreDeploy []string `yaml:"pre_deploy"`

	// PostDeploy run in order after the group serves the new release. A
	// failure is reported but does not roll back.
	PostDeploy []string `yaml:"post_deploy"`

	// Timeout bounds each hook; default 10m.
	Timeout Duration `yaml:"timeout"`
}

// Deploy defaults.
const (
	DefaultHookTimeout = 10 * time.Minute
)

// RolloutPolicy returns the deploy policy as the rollout package takes
// it: defaults of the rollout package for what is unset, the group's
// health grace, and the balancer's drain timeout. The App must be
// validated (Load or Parse), so the quantities parse.
func (a *App) RolloutPolicy() rollout.Policy {
	p := rollout.Policy{
		BatchTimeout: a.Deploy.BatchTimeout.D(),
		HealthGrace:  a.Health.Grace.D(),
		DrainTimeout: a.Balancer.DrainTimeout.D(),
		MaxFailures:  a.Deploy.MaxFailures,
	}
	if q, err := rollout.ParseQuantity(a.Deploy.MaxSurge); a.Deploy.MaxSurge != "" && err == nil {
		p.MaxSurge = q
	}
	if q, err := rollout.ParseQuantity(a.Deploy.MaxUnavailable); a.Deploy.MaxUnavailable != "" && err == nil {
		p.MaxUnavailable = q
	}
	return p.WithDefaults()
}

// HookTimeout is deploy.hooks.timeout, or DefaultHookTimeout when unset.
func (a *App) HookTimeout() time.Duration {
	if t := a.Deploy.Hooks.Timeout.D(); t > 0 {
		return t
	}
	return DefaultHookTimeout
}

// checkDeploy validates the deploy section, recording every problem in d.
func (a *App) checkDeploy(d *document) {
	c := &appChecker{a: a, d: d}
	dp := a.Deploy
	quantity := func(path, s string) bool {
		if s == "" {
			return true
		}
		_, err := rollout.ParseQuantity(s)
		c.check(err != nil, path, "%v (a count such as 1 or a percentage such as 25%%)", err)
		return err == nil
	}
	okS := quantity("deploy.max_surge", dp.MaxSurge)
	okU := quantity("deploy.max_unavailable", dp.MaxUnavailable)
	c.check(dp.BatchTimeout < 0, "deploy.batch_timeout", "must not be negative, got %s", dp.BatchTimeout.D())
	c.check(dp.BatchTimeout > 0 && dp.BatchTimeout <= a.Health.Grace, "deploy.batch_timeout",
		"%s must be longer than health.grace (%s), or a slow-booting instance fails the deploy before its grace ends",
		dp.BatchTimeout.D(), a.Health.Grace.D())
	c.check(dp.MaxFailures < 0, "deploy.max_failures", "must not be negative, got %d", dp.MaxFailures)
	c.check(dp.Hooks.Timeout < 0, "deploy.hooks.timeout", "must not be negative, got %s", dp.Hooks.Timeout.D())
	for i, h := range dp.Hooks.PreDeploy {
		c.check(h == "", fmt.Sprintf("deploy.hooks.pre_deploy[%d]", i), "must not be empty")
	}
	for i, h := range dp.Hooks.PostDeploy {
		c.check(h == "", fmt.Sprintf("deploy.hooks.post_deploy[%d]", i), "must not be empty")
	}
	// The rest of the policy's rules; a bad health.grace is reported there.
	if okS && okU && !c.failed("deploy.batch_timeout") && a.Health.Grace >= 0 && !c.failed("health.grace") {
		if err := a.RolloutPolicy().Validate(); err != nil {
			c.check(true, "deploy", "%v", err)
		}
	}
}
