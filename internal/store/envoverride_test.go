package store

import (
	"path/filepath"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

func TestEnvOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if vs, err := s.EnvOverrides("web"); err != nil || len(vs) != 0 {
		t.Fatalf("empty store: %v, %v", vs, err)
	}
	if _, err := s.UpdateEnvOverrides("web", []api.EnvVar{{Name: "B", Value: "2"}, {Name: "A", Value: "s3cret", Secret: true}}, nil); err != nil {
		t.Fatal(err)
	}
	vs, err := s.UpdateEnvOverrides("web", []api.EnvVar{{Name: "B", Value: "3"}}, []string{"A", "MISSING"})
	if err != nil || len(vs) != 1 || vs[0] != (api.EnvVar{Name: "B", Value: "3"}) {
		t.Fatalf("after update: %v, %v", vs, err)
	}
	if _, err := s.UpdateEnvOverrides("", nil, nil); err == nil {
		t.Error("empty app name accepted")
	}
	s.Close()
	s, err = Open(path, Options{}) // durable across reopen
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if vs, err := s.EnvOverrides("web"); err != nil || len(vs) != 1 || vs[0].Value != "3" {
		t.Fatalf("after reopen: %v, %v", vs, err)
	}
	if vs, _ := s.EnvOverrides("other"); len(vs) != 0 {
		t.Errorf("other app sees %v", vs)
	}
}
