package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

// fill writes a store with every kind of record, big enough to span many
// pages, and closes it.
func fill(t *testing.T, path string) {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutGroup(api.Group{App: "web", Min: 1, Max: 9, Desired: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		r, err := s.PutRelease(api.Release{App: "web", Digest: "sha256:" + strings.Repeat(strconv.Itoa(i%10), 64), Command: "node main.js",
			Env: []api.EnvVar{{Name: "N", Value: strconv.Itoa(i)}, {Name: "PAD", Value: strings.Repeat("x", 300)}, {Name: "TOKEN", Value: "s3cret", Secret: true}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Activate("web", r.Version, api.ReleaseSuperseded); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UpdateEnvOverrides("web", []api.EnvVar{{Name: "MONGO_URL", Value: "mongodb://u:p@db/app", Secret: true}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key("sticky", 32); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := s.AppendEvent("web", api.Event{Type: "state", Reason: fmt.Sprintf("instance %d in service", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// dump reads everything the controller reads, as text.
func dump(s *Store) (string, error) {
	var b strings.Builder
	g, ok, err := s.GetGroup("web")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "group %v %+v\n", ok, g)
	rels, err := s.Releases("web")
	if err != nil {
		return "", err
	}
	for _, r := range rels {
		fmt.Fprintf(&b, "release %+v\n", r)
	}
	env, err := s.EnvOverrides("web")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "env %+v\n", env)
	evs, err := s.Events("", 0, 0)
	if err != nil {
		return "", err
	}
	for _, e := range evs {
		fmt.Fprintf(&b, "event %d %s %s\n", e.Seq, e.Type, e.Reason)
	}
	return b.String(), nil
}

func TestEmptyFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{})
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open of an empty file = %v, want ErrDamaged", err)
	}
	for _, want := range []string{path, "empty", "shoal restore", "move " + path + " away"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty file was changed: %v %v", fi, err)
	}
}

func TestMissingFileIsFirstStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s := open(t, path, Options{})
	if g, ok, err := s.GetGroup("web"); err != nil || ok {
		t.Fatalf("new store has group %+v %v %v", g, ok, err)
	}
}

func TestNotAShoalStoreRefused(t *testing.T) {
	for name, setup := range map[string]func(tx *bolt.Tx) error{
		"other buckets": func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err },
		"no schema key": func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketMeta); return err },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "shoal.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(setup); err != nil {
				t.Fatal(err)
			}
			db.Close()
			_, err = Open(path, Options{})
			if !errors.Is(err, ErrDamaged) || !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open = %v, want a damaged-store error naming the file", err)
			}
		})
	}
	t.Run("not bbolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "shoal.db")
		if err := os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, Options{}); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) {
			t.Fatalf("Open = %v, want a damaged-store error naming the file", err)
		}
	})
}

// TestDamagedPagesNeverPanic overwrites single pages of a real store, one at
// a time (garbage, zeros, or the page's bytes shifted), and truncates it at
// page boundaries. Each damaged copy must either open and read exactly the
// original data, or be refused with a damaged-store error naming the file:
// never a panic, never a silently empty or different store.
func TestDamagedPagesNeverPanic(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.db")
	fill(t, orig)
	// Each Open commits once (the schema check), so after two both meta
	// pages describe the same data: a damaged newest meta page makes bbolt
	// fall back on the previous commit, by design, as after a crash.
	var want string
	for range 2 {
		s := open(t, orig, Options{})
		var err error
		if want, err = dump(s); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	good, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := os.Getpagesize()
	pages := len(good) / pageSize
	if pages < 8 {
		t.Fatalf("store has only %d pages", pages)
	}
	if pages > 200 {
		pages = 200 // bound the run
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var refused, intact int
	try := func(name string, data []byte) {
		t.Helper()
		path := filepath.Join(dir, name, "shoal.db")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := openAndDump(path)
		switch {
		case err == nil && got == want:
			intact++
		case err == nil:
			t.Errorf("%s: opened and read different data:\n%.600s", name, got)
		case !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "shoal restore"):
			t.Errorf("%s: error %v is not a damaged-store error naming the file", name, err)
		default:
			refused++
		}
		os.RemoveAll(filepath.Dir(path))
	}
	for p := range pages {
		for mode, corrupt := range []func(page []byte){
			func(page []byte) { // garbage
				for i := range page {
					page[i] = byte(rng.Uint32())
				}
			},
			func(page []byte) { clear(page) },
			func(page []byte) { // a torn write: the page's tail replaced by its head
				copy(page[len(page)/2:], page[:len(page)/2])
			},
		} {
			data := bytes.Clone(good)
			corrupt(data[p*pageSize : (p+1)*pageSize])
			try(fmt.Sprintf("page%d-mode%d", p, mode), data)
		}
	}
	for _, n := range []int{1, 2, 3, pages / 2, pages - 1} {
		try(fmt.Sprintf("truncated%d", n), good[:n*pageSize])
	}
	t.Logf("%d pages: %d damaged copies refused, %d read intact", pages, refused, intact)
	if refused == 0 {
		t.Fatal("no damaged copy was refused: the corruptions did not reach the data")
	}
}

// openAndDump opens the store at path, reads everything and writes once; a
// panic fails the whole test binary, which is what the test guards against.
func openAndDump(path string) (string, error) {
	s, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		return "", err
	}
	defer s.Close()
	d, err := dump(s)
	if err != nil {
		return "", err
	}
	if _, err := s.AppendEvent("web", api.Event{Type: "probe"}); err != nil {
		return "", err
	}
	return d, nil
}
