package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

// bucketMembers holds where the servers of a Raft cluster serve, key:
// server id, value: one memberRecord as JSON. Created on first write, like
// hosts, so stores written before it existed need no migration.
var bucketMembers = []byte("cluster_members")

// memberRecordVersion is the version of memberRecord this code writes.
const memberRecordVersion = 1

// memberRecord is the persisted form of api.ClusterMember.
type memberRecord struct {
	Version  int    `json:"version"`
	AdminURL string `json:"admin_url"`
	FleetURL string `json:"fleet_url"`
}

func decodeMember(id, raw []byte) (api.ClusterMember, error) {
	var r memberRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return api.ClusterMember{}, fmt.Errorf("%w: member record: %w", errCorrupt, redactJSONError(err))
	}
	if r.Version != memberRecordVersion {
		return api.ClusterMember{}, fmt.Errorf("%w: member record version %d, want %d", ErrSchema, r.Version, memberRecordVersion)
	}
	return api.ClusterMember{ID: string(id), AdminURL: r.AdminURL, FleetURL: r.FleetURL}, nil
}

// PutMember stores m under m.ID, replacing the record of that id.
func (s *Store) PutMember(m api.ClusterMember) error {
	if m.ID == "" {
		return fmt.Errorf("put member: %w: empty id", ErrInvalid)
	}
	enc, err := json.Marshal(memberRecord{Version: memberRecordVersion, AdminURL: m.AdminURL, FleetURL: m.FleetURL})
	if err != nil {
		return fmt.Errorf("put member %s: %w", m.ID, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketMembers)
		if err != nil {
			return err
		}
		return b.Put([]byte(m.ID), enc)
	})
	if err != nil {
		return fmt.Errorf("put member %s: %w", m.ID, err)
	}
	return nil
}

// Members returns every stored member, sorted by id.
func (s *Store) Members() ([]api.ClusterMember, error) {
	var out []api.ClusterMember
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMembers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			m, err := decodeMember(k, v)
			if err != nil {
				return fmt.Errorf("member %q: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	slices.SortFunc(out, func(a, b api.ClusterMember) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Member returns the member id; false when none is stored.
func (s *Store) Member(id string) (api.ClusterMember, bool, error) {
	ms, err := s.Members()
	if err != nil {
		return api.ClusterMember{}, false, err
	}
	for _, m := range ms {
		if m.ID == id {
			return m, true, nil
		}
	}
	return api.ClusterMember{}, false, nil
}
