package store

import (
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ReleaseStatus is where a release stands, persisted as its string.
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

func validStatus(s string) bool {
	switch ReleaseStatus(s) {
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

// EnvVar is one variable of a release's environment. Secret values are
// stored (the controller needs them) but must never be printed.
type EnvVar struct {
	Name   string
	Value  string
	Secret bool
}

// Release is one immutable, numbered release of an app: an artifact plus
// what it runs with. Only Status (and Note) change after it is made.
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
	// ConfigFingerprint digests Command and Env (config.App.Fingerprint).
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
	// existed, unknown: see HasServed). Set once, by MarkServed.
	Served time.Time
}

// HasServed reports whether an instance of r was ever in service: Served
// is set, or r was stored before Served existed with a status that only a
// release that had been active could get (superseded, rolled_back).
func (r Release) HasServed() bool {
	return !r.Served.IsZero() || r.Status == ReleaseSuperseded || r.Status == ReleaseRolledBack
}

// Redacted returns r with every secret value replaced by "[redacted]",
// safe to print or send.
func (r Release) Redacted() Release {
	r.Env = slices.Clone(r.Env)
	for i := range r.Env {
		if r.Env[i].Secret {
			r.Env[i].Value = "[redacted]"
		}
	}
	return r
}

// releaseBucket returns app's nested release bucket, or nil.
func releaseBucket(tx *bolt.Tx, app string) *bolt.Bucket {
	return tx.Bucket(bucketReleases).Bucket([]byte(app))
}

// hasRelease reports whether release version of app exists.
func hasRelease(tx *bolt.Tx, app string, version int) bool {
	b := releaseBucket(tx, app)
	return b != nil && version > 0 && b.Get(itob(uint64(version))) != nil
}

// NextRelease returns the version the next new release of app will get.
// It reserves nothing: PutRelease assigns the number.
func (s *Store) NextRelease(app string) (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = 1
		if b := releaseBucket(tx, app); b != nil {
			n = int(b.Sequence()) + 1
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("next release of %s: %w", app, err)
	}
	return n, nil
}

// PutRelease stores r and returns it as stored. A release with Version 0
// is new: it gets the next version number and CreatedAt (and Status
// ReleasePending when empty), in the same transaction that writes it. A
// release with a Version must exist already (ErrNotFound) and only its
// Status and Note are updated, each when not empty; its other fields stay
// as first written.
func (s *Store) PutRelease(r Release) (Release, error) {
	if err := checkApp(r.App); err != nil {
		return Release{}, fmt.Errorf("put release: %w", err)
	}
	if r.Status == "" && r.Version == 0 {
		r.Status = ReleasePending
	}
	if r.Status != "" && !validStatus(string(r.Status)) {
		return Release{}, fmt.Errorf("put release: %w: status %q", ErrInvalid, r.Status)
	}
	if r.Version < 0 {
		return Release{}, fmt.Errorf("put release: %w: version %d", ErrInvalid, r.Version)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketReleases).CreateBucketIfNotExists([]byte(r.App))
		if err != nil {
			return err
		}
		if r.Version == 0 {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			r.Version = int(seq)
			r.CreatedAt = s.now()
		} else {
			raw := b.Get(itob(uint64(r.Version)))
			if raw == nil {
				return fmt.Errorf("release %d: %w", r.Version, ErrNotFound)
			}
			old, err := decodeRelease(raw)
			if err != nil {
				return err
			}
			if r.Status != "" {
				old.Status = r.Status
			}
			if r.Note != "" {
				old.Note = r.Note
			}
			r = old
		}
		v, err := encodeRelease(r)
		if err != nil {
			return err
		}
		return b.Put(itob(uint64(r.Version)), v)
	})
	if err != nil {
		return Release{}, fmt.Errorf("put release of %s: %w", r.App, err)
	}
	return r, nil
}

// SetReleaseStatus changes the status of release version of app.
func (s *Store) SetReleaseStatus(app string, version int, status ReleaseStatus) error {
	r, err := s.GetRelease(app, version)
	if err != nil {
		return err
	}
	r.Status = status
	_, err = s.PutRelease(r)
	return err
}

// Activate makes version the current release of app in one transaction:
// it becomes ReleaseActive, the previously active release becomes
// previous (ReleaseSuperseded after a deploy, ReleaseRolledBack after a
// rollback) if it ever served (Release.HasServed), else ReleaseFailed,
// and the group's Release points at it. The group must exist.
func (s *Store) Activate(app string, version int, previous ReleaseStatus) error {
	if previous != ReleaseSuperseded && previous != ReleaseRolledBack && previous != ReleaseFailed {
		return fmt.Errorf("activate: %w: previous status %q", ErrInvalid, previous)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketGroups).Get([]byte(app))
		if raw == nil {
			return fmt.Errorf("group: %w", ErrNotFound)
		}
		g, err := decodeGroup(raw)
		if err != nil {
			return err
		}
		b := releaseBucket(tx, app)
		if b == nil || b.Get(itob(uint64(version))) == nil {
			return fmt.Errorf("release %d: %w", version, ErrNotFound)
		}
		set := func(v int, st ReleaseStatus) error {
			r, err := decodeRelease(b.Get(itob(uint64(v))))
			if err != nil {
				return err
			}
			r.Status = st
			enc, err := encodeRelease(r)
			if err != nil {
				return err
			}
			return b.Put(itob(uint64(v)), enc)
		}
		if raw := b.Get(itob(uint64(g.Release))); g.Release != 0 && g.Release != version && raw != nil {
			prev, err := decodeRelease(raw)
			if err != nil {
				return err
			}
			st := previous
			if !prev.HasServed() {
				st = ReleaseFailed
			}
			if err := set(g.Release, st); err != nil {
				return err
			}
		}
		if err := set(version, ReleaseActive); err != nil {
			return err
		}
		g.Release = version
		return s.putGroup(tx, &g)
	})
	if err != nil {
		return fmt.Errorf("activate release %d of %s: %w", version, app, err)
	}
	return nil
}

// MarkServed records at as the time release version of app was first in
// service. It does nothing when Served is set already, so that the first
// time stays; ErrNotFound when the release does not exist (pruned).
func (s *Store) MarkServed(app string, version int, at time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := releaseBucket(tx, app)
		if b == nil || version < 1 {
			return ErrNotFound
		}
		raw := b.Get(itob(uint64(version)))
		if raw == nil {
			return ErrNotFound
		}
		r, err := decodeRelease(raw)
		if err != nil || !r.Served.IsZero() {
			return err
		}
		r.Served = at.UTC()
		enc, err := encodeRelease(r)
		if err != nil {
			return err
		}
		return b.Put(itob(uint64(version)), enc)
	})
	if err != nil {
		return fmt.Errorf("mark release %d of %s served: %w", version, app, err)
	}
	return nil
}

// GetRelease returns release version of app, or an error wrapping
// ErrNotFound.
func (s *Store) GetRelease(app string, version int) (Release, error) {
	var r Release
	err := s.db.View(func(tx *bolt.Tx) error {
		b := releaseBucket(tx, app)
		if b == nil || version < 1 {
			return ErrNotFound
		}
		raw := b.Get(itob(uint64(version)))
		if raw == nil {
			return ErrNotFound
		}
		var err error
		r, err = decodeRelease(raw)
		return err
	})
	if err != nil {
		return Release{}, fmt.Errorf("get release %d of %s: %w", version, app, err)
	}
	return r, nil
}

// Releases returns every stored release of app, newest first.
func (s *Store) Releases(app string) ([]Release, error) {
	var out []Release
	err := s.db.View(func(tx *bolt.Tx) error {
		b := releaseBucket(tx, app)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			r, err := decodeRelease(v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list releases of %s: %w", app, err)
	}
	return out, nil
}

// PruneReleases deletes the oldest releases of app so that at most keep
// remain, never deleting the group's current release nor any version in
// protect (those count toward keep). It returns the deleted releases,
// oldest first, so their artifacts can be removed when no kept release
// uses them. keep < 1 is ErrInvalid.
func (s *Store) PruneReleases(app string, keep int, protect ...int) ([]Release, error) {
	if keep < 1 {
		return nil, fmt.Errorf("prune releases: %w: keep %d", ErrInvalid, keep)
	}
	var deleted []Release
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := releaseBucket(tx, app)
		if b == nil {
			return nil
		}
		keepSet := map[int]bool{}
		for _, v := range protect {
			keepSet[v] = true
		}
		if raw := tx.Bucket(bucketGroups).Get([]byte(app)); raw != nil {
			if g, err := decodeGroup(raw); err == nil && g.Release != 0 {
				keepSet[g.Release] = true
			}
		}
		var versions []int // newest first
		c := b.Cursor()
		for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
			versions = append(versions, int(btoi(k)))
		}
		kept := 0
		for _, v := range versions {
			if keepSet[v] {
				kept++
			}
		}
		var drop []int
		for _, v := range versions {
			switch {
			case keepSet[v]:
			case kept < keep:
				kept++
			default:
				drop = append(drop, v)
			}
		}
		for i := len(drop) - 1; i >= 0; i-- {
			r, err := decodeRelease(b.Get(itob(uint64(drop[i]))))
			if err != nil {
				return err
			}
			if err := b.Delete(itob(uint64(drop[i]))); err != nil {
				return err
			}
			deleted = append(deleted, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune releases of %s: %w", app, err)
	}
	return deleted, nil
}
