package store

import (
	"crypto/rand"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Key returns the random key stored under name, creating it with size
// random bytes on first use. Keys survive restarts, so for example sticky
// cookies signed with one stay valid. A stored key of another size is
// returned as it is. The bytes are secret: never print them.
func (s *Store) Key(name string, size int) ([]byte, error) {
	if name == "" || size < 1 {
		return nil, fmt.Errorf("key: %w: name %q, size %d", ErrInvalid, name, size)
	}
	var out []byte
	err := s.db.updateNoBackup(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if v := b.Get([]byte(name)); v != nil {
			out = append([]byte(nil), v...)
			return nil
		}
		out = make([]byte, size)
		if _, err := rand.Read(out); err != nil {
			return err
		}
		return b.Put([]byte(name), out)
	})
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	return out, nil
}

// putKey stores key under name unless a key of that name exists, and
// returns the stored key (PutKey's Apply).
func (s *Store) putKey(name string, key []byte) ([]byte, error) {
	if name == "" || len(key) == 0 {
		return nil, fmt.Errorf("key: %w: name %q, size %d", ErrInvalid, name, len(key))
	}
	var out []byte
	err := s.db.updateNoBackup(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if v := b.Get([]byte(name)); v != nil {
			out = append([]byte(nil), v...)
			return nil
		}
		out = append([]byte(nil), key...)
		return b.Put([]byte(name), out)
	})
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	return out, nil
}

// HasKey returns the key stored under name, if any, without creating one
// (a replicated store's writer draws a new key on the leader: PutKey).
func (s *Store) HasKey(name string) ([]byte, bool, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketKeys).Get([]byte(name)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("key %s: %w", name, err)
	}
	return out, out != nil, nil
}
