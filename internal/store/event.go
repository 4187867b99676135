package store

import (
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

// AppendEvent stores e as an event of app with the next sequence number
// (numbering events 1, 2, 3 ... across all apps) and the current time when
// e.Time is zero, and returns it as stored. An empty e.Type is ErrInvalid.
// Events beyond Options.MaxEvents are deleted, oldest first, in the same
// transaction. Events must not hold secret values.
func (s *Store) AppendEvent(app string, e api.Event) (api.Event, error) {
	out, err := s.AppendEvents(app, []api.Event{e})
	if err != nil {
		return api.Event{}, err
	}
	return out[0], nil
}

// AppendEvents stores evs as events of app, in order, in one transaction
// (one write to the disk, however many): either every one is stored, with
// consecutive sequence numbers, or none is and the error says why. Each is
// stored as AppendEvent stores one; the stored events are returned.
func (s *Store) AppendEvents(app string, evs []api.Event) ([]api.Event, error) {
	out := make([]api.Event, len(evs))
	for i, e := range evs {
		if e.Type == "" {
			return nil, fmt.Errorf("append event: %w: empty kind (event %d of %d)", ErrInvalid, i+1, len(evs))
		}
		if e.Time.IsZero() {
			e.Time = s.now()
		}
		out[i] = e
	}
	if len(out) == 0 {
		return out, nil
	}
	err := s.db.updateNoBackup(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		var seq uint64
		for i := range out {
			var err error
			if seq, err = b.NextSequence(); err != nil {
				return err
			}
			out[i].Seq = seq
			v, err := encodeEvent(app, out[i])
			if err != nil {
				return err
			}
			if err := b.Put(itob(seq), v); err != nil {
				return err
			}
		}
		// Sequence numbers are contiguous and only the oldest are ever
		// deleted, so everything at or below seq-MaxEvents goes.
		if seq <= uint64(s.opts.MaxEvents) {
			return nil
		}
		limit := seq - uint64(s.opts.MaxEvents)
		// Collect first: deleting under a moving cursor can skip keys.
		var old [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && btoi(k) <= limit; k, _ = c.Next() {
			old = append(old, append([]byte(nil), k...))
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("append event: %w", err)
	}
	return out, nil
}

// Events returns up to limit events of app with Seq > afterSeq, oldest
// first. An empty app means every app; limit <= 0 means no limit.
func (s *Store) Events(app string, afterSeq uint64, limit int) ([]api.Event, error) {
	if afterSeq == math.MaxUint64 {
		return nil, nil
	}
	var out []api.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(itob(afterSeq + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			evApp, e, err := decodeEvent(v)
			if err != nil {
				return err
			}
			if app != "" && evApp != app {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// LastEventSeq returns the sequence number of the newest event, 0 if none.
func (s *Store) LastEventSeq() (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketEvents).Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("last event: %w", err)
	}
	return n, nil
}
