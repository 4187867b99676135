package store

import (
	"path/filepath"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

// TestMembers: a cluster's member records are put, replaced and read back
// sorted; an unknown id is not found; an empty id is refused.
func TestMembers(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "shoal.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, err := s.Member("s1"); err != nil || ok {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	for _, m := range []api.ClusterMember{
		{ID: "s2", AdminURL: "https://10.0.0.2:7440", FleetURL: "https://10.0.0.2:7443"},
		{ID: "s1", AdminURL: "http://old", FleetURL: "https://old"},
		{ID: "s1", AdminURL: "https://10.0.0.1:7440", FleetURL: "https://10.0.0.1:7443"},
	} {
		if err := s.PutMember(m); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := s.Members()
	if err != nil || len(ms) != 2 || ms[0].ID != "s1" || ms[0].AdminURL != "https://10.0.0.1:7440" || ms[1].FleetURL != "https://10.0.0.2:7443" {
		t.Fatalf("members: %+v %v", ms, err)
	}
	if m, ok, err := s.Member("s2"); err != nil || !ok || m.AdminURL != "https://10.0.0.2:7440" {
		t.Fatalf("member s2: %+v %v %v", m, ok, err)
	}
	if err := s.PutMember(api.ClusterMember{}); err == nil {
		t.Fatal("an empty id was stored")
	}
}
