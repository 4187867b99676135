package api

import (
	"slices"
	"time"
)

// ReleaseStatus is where a release stands, sent and persisted as its string.
type ReleaseStatus string

// Release statuses.
const (
	// ReleasePending: made, not (yet) rolled out.
	ReleasePending ReleaseStatus = "pending"
	// ReleaseActive: the group's current release.
	ReleaseActive ReleaseStatus = "active"
	// ReleaseSuperseded: served, then was replaced by a later deploy.
	ReleaseSuperseded ReleaseStatus = "superseded"
	// ReleaseFailed: it never served and never will: its rollout failed
	// or was turned back before any instance of it was in service, it
	// could not start, or its deploy was abandoned (a pending release
	// found at a start), or it was replaced before it served.
	ReleaseFailed ReleaseStatus = "failed"
	// ReleaseRolledBack: served (in part, or fully as the active release),
	// then the group went back to an earlier one.
	ReleaseRolledBack ReleaseStatus = "rolled_back"
)

// Valid reports whether s is one of the release statuses.
func (s ReleaseStatus) Valid() bool {
	switch s {
	case ReleasePending, ReleaseActive, ReleaseSuperseded, ReleaseFailed, ReleaseRolledBack:
		return true
	}
	return false
}

// Kinds of change that made a release (Release.Change).
const (
	ChangeInitial  = "initial"  // the app's first release
	ChangeCode     = "code"     // a new artifact
	ChangeConfig   = "config"   // same artifact, new command/env/settings
	ChangeRollback = "rollback" // a copy of an earlier release's contents
)

// RedactedValue replaces a secret value wherever one would be shown.
const RedactedValue = "[redacted]"

// EnvVar is one variable of an environment: of a release, or an override
// set with `shoal env` (POST /v1/env sends them, GET /v1/env lists them
// with secret values replaced by RedactedValue). Secret values are stored
// (the controller needs them) but must never be printed.
type EnvVar struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Secret bool   `json:"secret,omitempty"`
}

// Release is one immutable, numbered release of an app: an artifact plus
// what it runs with. Only Status (and Note, and Served once) change after
// it is made. The store persists it in a record of its own; the admin API
// sends it as a ReleaseInfo (secrets redacted).
type Release struct {
	// Version numbers an app's releases 1, 2, 3 ... in the order they were
	// made; numbers are never reused, even after pruning.
	Version int
	App     string
	// Digest is the artifact's digest ("sha256:<hex>").
	Digest string
	// SourceDigest fingerprints the source tree it was built from.
	SourceDigest string
	// Command is run.command.
	Command string
	// Env is the complete instance environment except PORT, sorted by name.
	Env []EnvVar
	// CPU (cores) and Memory (bytes) are run.cpu and run.memory, what
	// each instance declares it needs; zero declares nothing.
	CPU    float64
	Memory int64
	// Runtime is app.runtime ("process" or "docker"; "" in a release made
	// before it existed, a process), and Port run.port, the port inside
	// the container of a docker release.
	Runtime string
	Port    int
	// ConfigFingerprint digests Command, CPU, Memory and Env
	// (config.App.Fingerprint).
	ConfigFingerprint string
	// CreatedAt is set by the store when the release is made.
	CreatedAt time.Time
	Status    ReleaseStatus
	// Change says why it was made: ChangeInitial, ChangeCode,
	// ChangeConfig or ChangeRollback.
	Change string
	// Note is free text for people, such as "rollback of 4".
	Note string
	// Served is when an instance of the release was first in service;
	// zero if none ever was (or, for a release stored before this field
	// existed, unknown: see HasServed). Set once, by the store's MarkServed.
	Served time.Time
	// Config is the text of the shoal.yaml the release was made from, as
	// deployed (sent by `shoal deploy`, or read by `shoal up` for a first
	// release); empty for a release made before releases kept it.
	// ConfigFile is where that file was on the machine it came from, for
	// messages only.
	Config, ConfigFile string
	// DeployedEnv is the environment as deployed, before the `shoal env`
	// overrides were merged over it (Env is the result); secrets marked.
	// Nil for a release made before releases kept it.
	DeployedEnv []EnvVar
}

// HasServed reports whether an instance of r was ever in service: Served
// is set, or r was stored before Served existed with a status that only a
// release that had been active could get (superseded, rolled_back).
func (r Release) HasServed() bool {
	return !r.Served.IsZero() || r.Status == ReleaseSuperseded || r.Status == ReleaseRolledBack
}

// Redacted returns r with every secret value replaced by RedactedValue,
// safe to print or send. r's Env and DeployedEnv are not modified.
func (r Release) Redacted() Release {
	r.Env = redactEnv(r.Env)
	r.DeployedEnv = redactEnv(r.DeployedEnv)
	return r
}

func redactEnv(env []EnvVar) []EnvVar {
	env = slices.Clone(env)
	for i := range env {
		if env[i].Secret {
			env[i].Value = RedactedValue
		}
	}
	return env
}

// ReleaseInfo is one release as GET /v1/releases sends it (newest first):
// derived from a Release by [Release.Info], secrets redacted.
type ReleaseInfo struct {
	Version   int       `json:"version"`
	Digest    string    `json:"digest"`
	Command   string    `json:"command"`
	CreatedAt time.Time `json:"created_at"`
	// Status is a ReleaseStatus.
	Status ReleaseStatus `json:"status"`
	Change string        `json:"change,omitempty"`
	// Env is NAME=value with secret values redacted.
	Env []string `json:"env,omitempty"`
	// Current marks the release the group runs.
	Current bool `json:"current"`
	// Served is when an instance of the release was first in service;
	// zero if none ever was, or not recorded (releases stored before
	// Shoal recorded it).
	Served time.Time `json:"served,omitzero"`
	// Previous marks the release `shoal rollback` without a version goes
	// to: the newest one older than the current that served and whose
	// artifact is kept. At most one release has it.
	Previous bool `json:"previous,omitempty"`
}

// Info returns r as the admin API sends it, with secret values redacted;
// current and previous set ReleaseInfo's marks of the same names.
func (r Release) Info(current, previous bool) ReleaseInfo {
	r = r.Redacted()
	ri := ReleaseInfo{Version: r.Version, Digest: r.Digest, Command: r.Command, CreatedAt: r.CreatedAt,
		Status: r.Status, Change: r.Change, Current: current, Served: r.Served, Previous: previous}
	for _, v := range r.Env {
		ri.Env = append(ri.Env, v.Name+"="+v.Value)
	}
	return ri
}
