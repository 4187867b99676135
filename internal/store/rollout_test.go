package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestRolloutRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(path, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.GetRollout("web"); err != nil || found {
		t.Fatalf("empty store: found %v, %v", found, err)
	}
	if err := s.DeleteRollout("web"); err != nil {
		t.Fatalf("delete with no bucket: %v", err)
	}
	started := now.Add(-time.Minute)
	want := Rollout{App: "web", Holder: "deploy-1", By: "alice@laptop", From: 2, To: 3, Started: started,
		State: json.RawMessage(`{"version":1,"phase":"surging"}`)}
	if err := s.PutRollout(want); err != nil {
		t.Fatal(err)
	}
	want.State = json.RawMessage(`{"version":1,"phase":"draining"}`) // replaces
	if err := s.PutRollout(want); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, found, err := s.GetRollout("web")
	if err != nil || !found {
		t.Fatalf("after reopen: found %v, %v", found, err)
	}
	if got.Holder != "deploy-1" || got.By != "alice@laptop" || got.From != 2 || got.To != 3 ||
		!got.Started.Equal(started) || !got.Updated.Equal(now) || string(got.State) != `{"version":1,"phase":"draining"}` {
		t.Errorf("after reopen: %+v", got)
	}
	if _, found, _ := s.GetRollout("other"); found {
		t.Error("other app sees a rollout")
	}
	if err := s.DeleteRollout("web"); err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.GetRollout("web"); err != nil || found {
		t.Errorf("after delete: found %v, %v", found, err)
	}
}

func TestPutRolloutRejectsInvalid(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	ok := Rollout{App: "web", Holder: "h", From: 1, To: 2, State: json.RawMessage(`{}`)}
	for name, mod := range map[string]func(*Rollout){
		"no app":     func(r *Rollout) { r.App = "" },
		"no holder":  func(r *Rollout) { r.Holder = "" },
		"no target":  func(r *Rollout) { r.To = 0 },
		"bad state":  func(r *Rollout) { r.State = json.RawMessage(`{"x":`) },
		"not object": func(r *Rollout) { r.State = json.RawMessage(`[1]`) },
		"null state": func(r *Rollout) { r.State = json.RawMessage(`null`) },
	} {
		r := ok
		mod(&r)
		if err := s.PutRollout(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, found, _ := s.GetRollout("web"); found {
		t.Error("an invalid rollout was stored")
	}
}

func TestGetRolloutUnreadable(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	for _, raw := range []string{`{"version":2,"holder":"h","to":2,"state":{}}`, `not json`} {
		err := s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketRollouts)
			if err != nil {
				return err
			}
			return b.Put([]byte("web"), []byte(raw))
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.GetRollout("web"); !errors.Is(err, ErrSchema) {
			t.Errorf("record %q: %v, want ErrSchema", raw, err)
		}
	}
	if err := s.DeleteRollout("web"); err != nil {
		t.Fatal(err)
	}
}

// FuzzRolloutRecord checks that no stored bytes make GetRollout panic,
// and that what it accepts is written back unchanged.
func FuzzRolloutRecord(f *testing.F) {
	f.Add([]byte(`{"version":1,"holder":"h","from":1,"to":2,"started":"2025-01-01T00:00:00Z","state":{"version":1}}`))
	f.Add([]byte(`{"version":1,"state":null}`))
	f.Add([]byte(`{}`))
	s, err := Open(filepath.Join(f.TempDir(), "s.db"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, raw []byte) {
		err := s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketRollouts)
			if err != nil {
				return err
			}
			return b.Put([]byte("web"), raw)
		})
		if err != nil {
			t.Fatal(err)
		}
		r, found, err := s.GetRollout("web")
		if err != nil || !found {
			return
		}
		if err := s.PutRollout(r); err != nil {
			return // readable but not valid to write (no holder, ...)
		}
		r2, _, err := s.GetRollout("web")
		if err != nil || r2.Holder != r.Holder || r2.To != r.To || compact(r2.State) != compact(r.State) {
			t.Fatalf("round trip changed %+v into %+v (%v)", r, r2, err)
		}
	})
}

func compact(b []byte) string {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return "invalid: " + string(b)
	}
	return out.String()
}
