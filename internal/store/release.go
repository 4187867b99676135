package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

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
// api.ReleasePending when empty), in the same transaction that writes it. A
// release with a Version must exist already (ErrNotFound) and only its
// Status and Note are updated, each when not empty; its other fields stay
// as first written.
func (s *Store) PutRelease(r api.Release) (api.Release, error) {
	if err := checkApp(r.App); err != nil {
		return api.Release{}, fmt.Errorf("put release: %w", err)
	}
	if r.Status == "" && r.Version == 0 {
		r.Status = api.ReleasePending
	}
	if r.Status != "" && !r.Status.Valid() {
		return api.Release{}, fmt.Errorf("put release: %w: status %q", ErrInvalid, r.Status)
	}
	if r.Version < 0 {
		return api.Release{}, fmt.Errorf("put release: %w: version %d", ErrInvalid, r.Version)
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
		return api.Release{}, fmt.Errorf("put release of %s: %w", r.App, err)
	}
	return r, nil
}

// SetReleaseStatus changes the status of release version of app.
func (s *Store) SetReleaseStatus(app string, version int, status api.ReleaseStatus) error {
	r, err := s.GetRelease(app, version)
	if err != nil {
		return err
	}
	r.Status = status
	_, err = s.PutRelease(r)
	return err
}

// Activate makes version the current release of app in one transaction:
// it becomes api.ReleaseActive, the previously active release becomes
// previous (api.ReleaseSuperseded after a deploy, api.ReleaseRolledBack after a
// rollback) if it ever served (Release.HasServed), else api.ReleaseFailed,
// and the group's Release points at it. The group must exist.
func (s *Store) Activate(app string, version int, previous api.ReleaseStatus) error {
	if previous != api.ReleaseSuperseded && previous != api.ReleaseRolledBack && previous != api.ReleaseFailed {
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
		set := func(v int, st api.ReleaseStatus) error {
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
				st = api.ReleaseFailed
			}
			if err := set(g.Release, st); err != nil {
				return err
			}
		}
		if err := set(version, api.ReleaseActive); err != nil {
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
// time stays: no write and no backup (every instance of a release that
// comes into service calls it, 10,000 at once in a fleet's bring-up);
// ErrNotFound when the release does not exist (pruned).
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
		if err != nil {
			return err
		}
		if !r.Served.IsZero() {
			return errUnchanged
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
func (s *Store) GetRelease(app string, version int) (api.Release, error) {
	var r api.Release
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
		return api.Release{}, fmt.Errorf("get release %d of %s: %w", version, app, err)
	}
	return r, nil
}

// Releases returns every stored release of app, newest first.
func (s *Store) Releases(app string) ([]api.Release, error) {
	var out []api.Release
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
func (s *Store) PruneReleases(app string, keep int, protect ...int) ([]api.Release, error) {
	if keep < 1 {
		return nil, fmt.Errorf("prune releases: %w: keep %d", ErrInvalid, keep)
	}
	var deleted []api.Release
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
