package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketRollouts holds, per app (key: app name), the rollout in progress
// as one JSON record. The bucket is created on first write, so stores
// written before it existed need no migration. A record exists only while
// a rollout runs (or was cut short by a stop or a crash): the controller
// deletes it once the rollout's outcome is recorded.
var bucketRollouts = []byte("rollouts")

// rolloutRecordVersion is the version of rolloutRecord this code writes.
const rolloutRecordVersion = 1

// Rollout is the durable part of one app's rollout in progress: who
// deploys what, and the rollout state machine's own snapshot. The store
// treats State as opaque bytes; its format belongs to package rollout
// (rollout.Snapshot as JSON), which checks it on restore.
type Rollout struct {
	App string
	// Holder identifies the deploy that holds the app's deploy lock; By
	// says who started it ("alice@laptop", "rollback").
	Holder string
	By     string
	// From and To are the releases the rollout moves between.
	From, To int
	// Started is when the deploy began; Updated is when the record was
	// last written (set by PutRollout).
	Started time.Time
	Updated time.Time
	// State is the rollout's snapshot, valid JSON.
	State json.RawMessage
}

// rolloutRecord is the persisted form of Rollout.
type rolloutRecord struct {
	Version int             `json:"version"`
	Holder  string          `json:"holder"`
	By      string          `json:"by,omitempty"`
	From    int             `json:"from"`
	To      int             `json:"to"`
	Started time.Time       `json:"started"`
	Updated time.Time       `json:"updated"`
	State   json.RawMessage `json:"state"`
}

// PutRollout stores r as app r.App's rollout in progress, replacing any
// earlier one, in one durable transaction. It sets r.Updated. It returns
// ErrInvalid for an empty app or holder, a non-positive To, or a State
// that is not a JSON object.
func (s *Store) PutRollout(r Rollout) error {
	var errs []error
	if err := checkApp(r.App); err != nil {
		errs = append(errs, err)
	}
	if r.Holder == "" {
		errs = append(errs, fmt.Errorf("%w: empty holder", ErrInvalid))
	}
	if r.To <= 0 || r.From < 0 {
		errs = append(errs, fmt.Errorf("%w: rollout v%d -> v%d", ErrInvalid, r.From, r.To))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(r.State, &obj); err != nil || obj == nil {
		errs = append(errs, fmt.Errorf("%w: rollout state is not a JSON object", ErrInvalid))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("put rollout: %w", err)
	}
	rec := rolloutRecord{Version: rolloutRecordVersion, Holder: r.Holder, By: r.By, From: r.From, To: r.To,
		Started: r.Started.UTC(), Updated: s.now(), State: r.State}
	enc, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("put rollout of %s: %w", r.App, err)
	}
	err = s.db.updateNoBackup(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRollouts)
		if err != nil {
			return err
		}
		return b.Put([]byte(r.App), enc)
	})
	if err != nil {
		return fmt.Errorf("put rollout of %s: %w", r.App, err)
	}
	return nil
}

// GetRollout returns app's stored rollout; found is false when none is
// stored. A record this code cannot read is an error wrapping ErrSchema:
// the caller decides whether to drop it (DeleteRollout).
func (s *Store) GetRollout(app string) (r Rollout, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRollouts)
		if b == nil {
			return nil
		}
		raw := b.Get([]byte(app))
		if raw == nil {
			return nil
		}
		var rec rolloutRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("%w: rollout record: %w", ErrSchema, redactJSONError(err))
		}
		if rec.Version != rolloutRecordVersion {
			return fmt.Errorf("%w: rollout record version %d, want %d", ErrSchema, rec.Version, rolloutRecordVersion)
		}
		found = true
		r = Rollout{App: app, Holder: rec.Holder, By: rec.By, From: rec.From, To: rec.To,
			Started: rec.Started, Updated: rec.Updated, State: append(json.RawMessage(nil), rec.State...)}
		return nil
	})
	if err != nil {
		return Rollout{}, false, fmt.Errorf("rollout of %s: %w", app, err)
	}
	return r, found, nil
}

// DeleteRollout removes app's stored rollout; deleting none is not an
// error.
func (s *Store) DeleteRollout(app string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRollouts)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(app))
	})
	if err != nil {
		return fmt.Errorf("delete rollout of %s: %w", app, err)
	}
	return nil
}
