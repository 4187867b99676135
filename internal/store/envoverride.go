package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

// bucketEnv holds, per app (key: app name), the env overrides set with
// `shoal env set` as one JSON record. The bucket is created on first
// write, so stores written before it existed need no migration.
var bucketEnv = []byte("env_overrides")

// envOverrideRecord is the persisted form of the overrides of one app.
type envOverrideRecord struct {
	Vars []envVarRecord `json:"vars"`
}

type envVarRecord struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Secret bool   `json:"secret,omitempty"`
}

// EnvOverrides returns the env overrides of app, sorted by name (none:
// an empty slice). Values are secret when marked so; callers redact them.
func (s *Store) EnvOverrides(app string) ([]api.EnvVar, error) {
	var out []api.EnvVar
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEnv)
		if b == nil {
			return nil
		}
		raw := b.Get([]byte(app))
		if raw == nil {
			return nil
		}
		var r envOverrideRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return redactJSONError(err)
		}
		for _, v := range r.Vars {
			out = append(out, api.EnvVar{Name: v.Name, Value: v.Value, Secret: v.Secret})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("env overrides of %s: %w", app, err)
	}
	return out, nil
}

// UpdateEnvOverrides sets the variables of set (replacing those of the
// same name) and removes the names in unset, in one transaction. It
// returns the overrides as they are afterwards.
func (s *Store) UpdateEnvOverrides(app string, set []api.EnvVar, unset []string) ([]api.EnvVar, error) {
	if err := checkApp(app); err != nil {
		return nil, fmt.Errorf("update env overrides: %w", err)
	}
	var out []api.EnvVar
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketEnv)
		if err != nil {
			return err
		}
		var r envOverrideRecord
		if raw := b.Get([]byte(app)); raw != nil {
			if err := json.Unmarshal(raw, &r); err != nil {
				return redactJSONError(err)
			}
		}
		byName := map[string]envVarRecord{}
		for _, v := range r.Vars {
			byName[v.Name] = v
		}
		for _, v := range set {
			byName[v.Name] = envVarRecord{Name: v.Name, Value: v.Value, Secret: v.Secret}
		}
		for _, n := range unset {
			delete(byName, n)
		}
		r.Vars = r.Vars[:0]
		for _, v := range byName {
			r.Vars = append(r.Vars, v)
		}
		slices.SortFunc(r.Vars, func(a, b envVarRecord) int { return strings.Compare(a.Name, b.Name) })
		enc, err := json.Marshal(r)
		if err != nil {
			return err
		}
		for _, v := range r.Vars {
			out = append(out, api.EnvVar{Name: v.Name, Value: v.Value, Secret: v.Secret})
		}
		return b.Put([]byte(app), enc)
	})
	if err != nil {
		return nil, fmt.Errorf("update env overrides of %s: %w", app, err)
	}
	return out, nil
}
