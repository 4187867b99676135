package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Snapshot is a consistent copy of the whole store as of its creation (one
// bbolt read transaction), for a replicated store's snapshots (issue 14).
// Writes go on while it is held; Close it soon: while a read transaction
// is open, bbolt cannot grow its memory map, so a write that needs a
// bigger file waits for Close.
type Snapshot struct {
	tx *bolt.Tx
}

// Snapshot starts a Snapshot of s. Apply is not running while it starts
// (Apply holds the same lock), so the copy falls between two commands.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	var tx *bolt.Tx
	err := s.db.guard(func() error {
		var err error
		tx, err = s.db.Begin(false)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	return &Snapshot{tx: tx}, nil
}

// WriteTo writes the snapshot as a bbolt file (what ReplaceFrom and
// Verify read) to w.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := sn.tx.WriteTo(w)
	if err != nil {
		return n, fmt.Errorf("write snapshot: %w", err)
	}
	return n, nil
}

// Close releases the snapshot's read transaction. Safe to call twice.
func (sn *Snapshot) Close() error {
	if sn.tx == nil {
		return nil
	}
	err := sn.tx.Rollback()
	sn.tx = nil
	return err
}

// ReplaceFrom makes the store's content the store file that r streams (a
// Snapshot's WriteTo), in one write transaction: every bucket is dropped
// and the file's buckets are copied in, sequences included. The file is
// first written beside the store and checked as Verify checks a backup; a
// damaged or foreign one is refused and nothing changes. It serialises
// with Apply.
func (s *Store) ReplaceFrom(r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".restore-*")
	if err != nil {
		return fmt.Errorf("replace store: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("replace store: receive snapshot: %w", err)
	}
	if _, err := Verify(tmp.Name()); err != nil {
		return fmt.Errorf("replace store: %w", err)
	}
	src, err := openBolt(tmp.Name(), &bolt.Options{ReadOnly: true, Timeout: DefaultTimeout})
	if err != nil {
		return fmt.Errorf("replace store: %w", err)
	}
	defer src.Close()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	err = src.View(func(stx *bolt.Tx) error {
		return s.db.Update(func(tx *bolt.Tx) error {
			if err := dropAll(tx); err != nil {
				return err
			}
			return stx.ForEach(func(name []byte, b *bolt.Bucket) error {
				nb, err := tx.CreateBucket(name)
				if err != nil {
					return err
				}
				return copyBucket(nb, b)
			})
		})
	})
	if err != nil {
		return fmt.Errorf("replace store: %w", err)
	}
	return nil
}

// Reset empties the store to a new one's content (the schema and the
// empty buckets), in one transaction that leaves the automatic backup as
// it was. A replica rebuilds its store from the Raft snapshot and log at
// every start (internal/cluster).
func (s *Store) Reset() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	err := s.db.updateNoBackup(func(tx *bolt.Tx) error {
		if err := dropAll(tx); err != nil {
			return err
		}
		return initSchema(tx)
	})
	if err != nil {
		return fmt.Errorf("reset store: %w", err)
	}
	return nil
}

// Empty reports whether the store holds no desired state: no group,
// release, event, key, host, token, rollout or env override.
func (s *Store) Empty() (bool, error) {
	empty := true
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if string(name) == string(bucketMeta) {
				return nil
			}
			if k, _ := b.Cursor().First(); k != nil || b.Sequence() != 0 {
				empty = false
			}
			return nil
		})
	})
	if err != nil {
		return false, fmt.Errorf("read store: %w", err)
	}
	return empty, nil
}

func dropAll(tx *bolt.Tx) error {
	var names [][]byte
	err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, append([]byte(nil), name...))
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := tx.DeleteBucket(n); err != nil {
			return err
		}
	}
	return nil
}

// copyBucket copies src's keys, nested buckets and sequence into dst.
func copyBucket(dst, src *bolt.Bucket) error {
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(k, v)
		}
		sb := src.Bucket(k)
		if sb == nil {
			return errors.New("bucket " + string(k) + " vanished during the copy")
		}
		nb, err := dst.CreateBucket(k)
		if err != nil {
			return err
		}
		return copyBucket(nb, sb)
	})
}
