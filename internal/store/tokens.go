package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

// bucketTokens holds the fleet's join tokens, key: token id, value: one
// tokenRecord as JSON. The bucket is created on first write, so stores
// written before it existed need no migration.
var bucketTokens = []byte("join_tokens")

// tokenRecordVersion is the version of tokenRecord this code writes.
const tokenRecordVersion = 1

// tokenRecord is the persisted form of api.JoinToken.
type tokenRecord struct {
	Version    int       `json:"version"`
	SecretHash []byte    `json:"secret_hash"`
	Role       string    `json:"role"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	Used       bool      `json:"used,omitempty"`
	UsedAt     time.Time `json:"used_at,omitzero"`
	UsedBy     string    `json:"used_by,omitempty"`
}

func tokenToRecord(t api.JoinToken) tokenRecord {
	return tokenRecord{Version: tokenRecordVersion, SecretHash: t.SecretHash, Role: string(t.Role),
		Created: t.Created.UTC(), Expires: t.Expires.UTC(), Used: t.Used, UsedAt: t.UsedAt.UTC(), UsedBy: t.UsedBy}
}

func decodeToken(id, raw []byte) (api.JoinToken, error) {
	var r tokenRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return api.JoinToken{}, fmt.Errorf("%w: join token record: %w", errCorrupt, redactJSONError(err))
	}
	if r.Version != tokenRecordVersion {
		return api.JoinToken{}, fmt.Errorf("%w: join token record version %d, want %d", ErrSchema, r.Version, tokenRecordVersion)
	}
	t := api.JoinToken{ID: string(id), SecretHash: r.SecretHash, Role: api.NodeRole(r.Role),
		Created: r.Created, Expires: r.Expires, Used: r.Used, UsedBy: r.UsedBy}
	if r.Used {
		t.UsedAt = r.UsedAt
	}
	return t, nil
}

// Tokens is the store's bucket of join tokens; it implements
// pki.TokenStore. Its methods are safe for concurrent use, and Take is
// atomic: of any number of concurrent Takes of one token, in this process,
// at most one succeeds (bbolt serialises write transactions, and only one
// process opens the store).
type Tokens struct{ s *Store }

// Tokens returns the join-token bucket of s.
func (s *Store) Tokens() *Tokens { return &Tokens{s: s} }

// Put stores t under t.ID, replacing a token of the same id. It returns
// ErrInvalid for an empty id, an empty secret hash or an unknown role.
func (ts *Tokens) Put(t api.JoinToken) error {
	if t.ID == "" || len(t.SecretHash) == 0 || (!t.Role.Valid()) {
		return fmt.Errorf("put join token: %w: id %q, %d-byte hash, role %q", ErrInvalid, t.ID, len(t.SecretHash), t.Role)
	}
	enc, err := json.Marshal(tokenToRecord(t))
	if err != nil {
		return fmt.Errorf("put join token %s: %w", t.ID, err)
	}
	err = ts.s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return err
		}
		return b.Put([]byte(t.ID), enc)
	})
	if err != nil {
		return fmt.Errorf("put join token %s: %w", t.ID, err)
	}
	return nil
}

// Take consumes the token id in one write transaction: it reads the
// record, calls check with it, and only if check returns nil marks it
// used (Used, UsedAt = the store's clock, UsedBy = by) and commits. found
// is false, with a nil error, when no token id is stored. check's error
// is returned as it is, nothing written; check runs inside the
// transaction, so it must be quick and must not call the store. Take
// itself does not refuse a used or expired token: that is check's
// decision, made on the record it is given.
func (ts *Tokens) Take(id, by string, check func(api.JoinToken) error) (found bool, err error) {
	var checkErr error
	err = ts.s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		raw := b.Get([]byte(id))
		if raw == nil {
			return nil
		}
		found = true
		t, err := decodeToken([]byte(id), raw)
		if err != nil {
			return err
		}
		if checkErr = check(t); checkErr != nil {
			return checkErr
		}
		t.Used, t.UsedAt, t.UsedBy = true, ts.s.now(), by
		enc, err := json.Marshal(tokenToRecord(t))
		if err != nil {
			return err
		}
		return b.Put([]byte(id), enc)
	})
	if checkErr != nil {
		return found, checkErr
	}
	if err != nil {
		return found, fmt.Errorf("take join token %s: %w", id, err)
	}
	return found, nil
}

// List returns every stored token, used and expired ones included,
// sorted by creation time and then id.
func (ts *Tokens) List() ([]api.JoinToken, error) {
	var out []api.JoinToken
	err := ts.s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			t, err := decodeToken(k, v)
			if err != nil {
				return fmt.Errorf("token %q: %w", k, err)
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	slices.SortFunc(out, func(a, b api.JoinToken) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Delete removes the token id; deleting none is not an error.
func (ts *Tokens) Delete(id string) error {
	err := ts.s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete join token %s: %w", id, err)
	}
	return nil
}
