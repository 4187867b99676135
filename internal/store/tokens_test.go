package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

var errTaken = errors.New("already used")

// takeOnce is the check a join makes: refuse a used token.
func takeOnce(t api.JoinToken) error {
	if t.Used {
		return errTaken
	}
	return nil
}

func testToken(id string, created time.Time) api.JoinToken {
	return api.JoinToken{ID: id, SecretHash: bytes.Repeat([]byte{7}, 32), Role: api.RoleAgent,
		Created: created, Expires: created.Add(time.Hour)}
}

func TestTokensSingleUseUnderConcurrentTakes(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{})
	tokens := s.Tokens()
	if err := tokens.Put(testToken("tok1", time.Now())); err != nil {
		t.Fatal(err)
	}
	const takers = 16
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		won      []string
		refusals int
		others   []error
	)
	for i := range takers {
		wg.Go(func() {
			by := string(rune('a' + i))
			found, err := tokens.Take("tok1", by, takeOnce)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case found && err == nil:
				won = append(won, by)
			case found && errors.Is(err, errTaken):
				refusals++
			default:
				others = append(others, err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 || refusals != takers-1 || len(others) != 0 {
		t.Fatalf("winners %q, refusals %d, other results %v; want exactly one winner", won, refusals, others)
	}
	list, err := tokens.List()
	if err != nil || len(list) != 1 || !list[0].Used || list[0].UsedBy != won[0] || list[0].UsedAt.IsZero() {
		t.Fatalf("after the takes: %+v, %v", list, err)
	}
}

func TestTokensSurviveReopenUsedStaysUsed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b", "a", "c"} {
		if err := s.Tokens().Put(testToken(id, created)); err != nil {
			t.Fatal(err)
		}
	}
	if found, err := s.Tokens().Take("a", "node-1", takeOnce); !found || err != nil {
		t.Fatalf("take a: found %v, %v", found, err)
	}
	if err := s.Tokens().Delete("c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path, Options{})
	tokens := s.Tokens()
	list, err := tokens.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "a" || list[1].ID != "b" {
		t.Fatalf("after reopen: %+v", list)
	}
	a, b := list[0], list[1]
	if !a.Used || a.UsedBy != "node-1" || b.Used || !b.UsedAt.IsZero() || b.Role != api.RoleAgent ||
		!b.Created.Equal(created) || !b.Expires.Equal(created.Add(time.Hour)) || !bytes.Equal(b.SecretHash, bytes.Repeat([]byte{7}, 32)) {
		t.Fatalf("records after reopen: %+v", list)
	}
	if found, err := tokens.Take("a", "node-2", takeOnce); !found || !errors.Is(err, errTaken) {
		t.Fatalf("second take of a after reopen: found %v, %v; want refused", found, err)
	}
	if found, err := tokens.Take("c", "node-2", takeOnce); found || err != nil {
		t.Fatalf("take of deleted c: found %v, %v; want not found", found, err)
	}
	if err := tokens.Delete("c"); err != nil {
		t.Fatalf("deleting a missing token: %v", err)
	}
}

func TestTokensRefusedCheckWritesNothing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{})
	tokens := s.Tokens()
	if found, err := tokens.Take("x", "n", takeOnce); found || err != nil {
		t.Fatalf("take in an empty store: found %v, %v", found, err)
	}
	if err := tokens.Put(testToken("x", time.Now())); err != nil {
		t.Fatal(err)
	}
	wrong := errors.New("wrong secret")
	if found, err := tokens.Take("x", "n", func(api.JoinToken) error { return wrong }); !found || err != wrong {
		t.Fatalf("refused take: found %v, %v; want the check's error as it is", found, err)
	}
	if found, err := tokens.Take("x", "n", takeOnce); !found || err != nil {
		t.Fatalf("a refused check burnt the token: %v", err)
	}
	for _, bad := range []api.JoinToken{{SecretHash: []byte{1}, Role: api.RoleAgent}, {ID: "y", Role: api.RoleLB},
		{ID: "y", SecretHash: []byte{1}, Role: api.RoleServer}} {
		if err := tokens.Put(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestDamagedTokenRecordRefusedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return err
		}
		return b.Put([]byte("bad"), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{})
	var de *DamagedError
	if !errors.As(err, &de) || de.Path != path {
		t.Fatalf("open with a damaged token record = %v, want a *DamagedError naming %s", err, path)
	}
}
