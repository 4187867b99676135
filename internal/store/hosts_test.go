package store

import (
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-dev/shoal/internal/api"
)

func TestHostsRoundTripAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	joined := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	want := []api.Host{
		{Name: "a1", URL: "https://10.0.0.1:7443", Zone: "a", Region: "nyc1", CPU: 1.5, MemoryBytes: 1 << 30, Epoch: "e1",
			Version: "v0.3.0", Generation: 4, Draining: true, Joined: joined, LastHello: joined.Add(time.Hour)},
		{Name: "b1", URL: "https://10.0.0.2:7443", Joined: joined},
	}
	for _, h := range []api.Host{want[1], want[0]} {
		if err := s.Hosts().Put(h); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, path, Options{})
	got, err := s.Hosts().List()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hosts after reopen:\n got %+v\nwant %+v", got, want)
	}
	if err := s.Hosts().Delete("a1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Hosts().Delete("nobody"); err != nil {
		t.Fatalf("deleting an unknown host: %v", err)
	}
	if got, _ := s.Hosts().List(); len(got) != 1 || got[0].Name != "b1" {
		t.Fatalf("after delete: %+v", got)
	}
}

func TestHostsRefuseInvalidRecords(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "shoal.db"), Options{})
	for _, h := range []api.Host{{}, {Name: "x", CPU: -1}, {Name: "x", CPU: math.NaN()}, {Name: "x", MemoryBytes: -5}} {
		if err := s.Hosts().Put(h); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(%+v) = %v, want ErrInvalid", h, err)
		}
	}
}

func TestDamagedHostRecordRefusedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hosts().Put(api.Host{Name: "a1", URL: "https://10.0.0.1:7443"}); err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHosts).Put([]byte("a1"), []byte(`{"version":1,"cpu":-2}`))
	})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{})
	var de *DamagedError
	if !errors.As(err, &de) {
		t.Fatalf("open with a damaged host record: %v, want a DamagedError", err)
	}
}
