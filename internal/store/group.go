package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

func checkGroup(g api.Group) error {
	if err := checkApp(g.App); err != nil {
		return err
	}
	if g.Min < 0 || g.Max < g.Min || g.Desired < g.Min || g.Desired > g.Max || g.Release < 0 {
		return fmt.Errorf("%w: group %s needs 0 <= min (%d) <= desired (%d) <= max (%d) and release >= 0 (%d)",
			ErrInvalid, g.App, g.Min, g.Desired, g.Max, g.Release)
	}
	return nil
}

// GetGroup returns the group of app and whether it exists.
func (s *Store) GetGroup(app string) (api.Group, bool, error) {
	var g api.Group
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGroups).Get([]byte(app))
		if b == nil {
			return nil
		}
		var err error
		g, err = decodeGroup(b)
		found = err == nil
		return err
	})
	if err != nil {
		return api.Group{}, false, fmt.Errorf("get group %s: %w", app, err)
	}
	return g, found, nil
}

// Groups returns every group, ordered by app name.
func (s *Store) Groups() ([]api.Group, error) {
	var out []api.Group
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(_, v []byte) error {
			g, err := decodeGroup(v)
			if err != nil {
				return err
			}
			out = append(out, g)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return out, nil
}

// PutGroup creates or replaces the group of g.App. It sets g.UpdatedAt. If
// g.Release is not 0, that release must exist.
func (s *Store) PutGroup(g api.Group) error {
	if err := checkGroup(g); err != nil {
		return fmt.Errorf("put group: %w", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if g.Release != 0 && !hasRelease(tx, g.App, g.Release) {
			return fmt.Errorf("release %d of %s: %w", g.Release, g.App, ErrNotFound)
		}
		return s.putGroup(tx, &g)
	})
	if err != nil {
		return fmt.Errorf("put group %s: %w", g.App, err)
	}
	return nil
}

func (s *Store) putGroup(tx *bolt.Tx, g *api.Group) error {
	g.UpdatedAt = s.now()
	b, err := encodeGroup(*g)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketGroups).Put([]byte(g.App), b)
}

// UpdateGroup applies fn to the stored group of app in one transaction and
// stores the result, so read-modify-write sequences do not race. fn must
// not keep the pointer. The group must exist (ErrNotFound).
func (s *Store) UpdateGroup(app string, fn func(*api.Group) error) (api.Group, error) {
	var g api.Group
	err := s.db.Update(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketGroups).Get([]byte(app))
		if raw == nil {
			return ErrNotFound
		}
		var err error
		if g, err = decodeGroup(raw); err != nil {
			return err
		}
		if err := fn(&g); err != nil {
			return err
		}
		g.App = app
		if err := checkGroup(g); err != nil {
			return err
		}
		if g.Release != 0 && !hasRelease(tx, app, g.Release) {
			return fmt.Errorf("release %d: %w", g.Release, ErrNotFound)
		}
		return s.putGroup(tx, &g)
	})
	if err != nil {
		return api.Group{}, fmt.Errorf("update group %s: %w", app, err)
	}
	return g, nil
}

// SetDesired sets the desired count of app's group, which must exist
// (ErrNotFound); n outside [Min, Max] is ErrInvalid.
func (s *Store) SetDesired(app string, n int) error {
	_, err := s.UpdateGroup(app, func(g *api.Group) error {
		if n < g.Min || n > g.Max {
			return fmt.Errorf("%w: desired %d is outside min-max %d-%d", ErrInvalid, n, g.Min, g.Max)
		}
		g.Desired = n
		return nil
	})
	return err
}
