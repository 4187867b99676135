package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServerCluster: server.yaml's cluster section is optional, and its
// id, listen and advertise are checked with their field paths.
func TestServerCluster(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.yaml")
	base := "fleet: {listen: \"127.0.0.1:0\"}\n"
	s, err := ParseServer(path, []byte(base+"cluster: {id: s1, listen: \"10.0.0.1:7450\", bootstrap: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Cluster; c == nil || c.ID != "s1" || c.Listen != "10.0.0.1:7450" || c.Advertise != "" || !c.Bootstrap || c.ElectionTimeout.D() != DefaultClusterElectionTimeout {
		t.Fatalf("cluster: %+v", s.Cluster)
	}
	if s, err := ParseServer(path, []byte(base)); err != nil || s.Cluster != nil {
		t.Fatalf("no cluster section: %v %+v", err, s)
	}
	if s, err := ParseServer(path, []byte(base+"cluster: {id: s-2, listen: \":7450\", advertise: \"10.0.0.2:7450\", election_timeout: 3s}\n")); err != nil || s.Cluster.Advertise != "10.0.0.2:7450" || s.Cluster.ElectionTimeout.D() != 3*time.Second {
		t.Fatalf("advertise: %v %+v", err, s)
	}
	for _, c := range []struct{ text, want string }{
		{"cluster: {listen: \"10.0.0.1:7450\"}\n", `cluster.id: must be 1 to 40 lowercase letters`},
		{"cluster: {id: S1, listen: \"10.0.0.1:7450\"}\n", `cluster.id: must be 1 to 40 lowercase letters, digits or '-' (not first or last), such as s1; got "S1"`},
		{"cluster: {id: s1}\n", "server.yaml:2:10: cluster.listen: invalid address \"\" (use host:port"},
		{"cluster: {id: s1, listen: nowhere}\n", "cluster.listen: invalid address \"nowhere\""},
		{"cluster: {id: s1, listen: \":7450\"}\n", "cluster.advertise: is required when cluster.listen (:7450) has no host"},
		{"cluster: {id: s1, listen: \"0.0.0.0:7450\"}\n", "cluster.advertise: is required"},
		{"cluster: {id: s1, listen: \":7450\", advertise: \"10.0.0.1\"}\n", "cluster.advertise: must be a host:port"},
		{"cluster: {id: s1, listen: \":7450\", advertise: \"10.0.0.1:0\"}\n", "cluster.advertise: must be a host:port"},
		{"admin: {listen: \"127.0.0.1:7450\"}\ncluster: {id: s1, listen: \"127.0.0.1:7450\"}\n", "cluster.listen: admin.listen listens on 127.0.0.1:7450 already"},
		{"cluster: {id: s1, listen: \"10.0.0.1:7450\", peers: [a]}\n", "peers"},
		{"cluster: {id: s1, listen: \"10.0.0.1:7450\", election_timeout: 10ms}\n", "cluster.election_timeout: must be at least 100ms, got 10ms"},
	} {
		_, err := ParseServer(path, []byte(base+c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error with %q", c.text, err, c.want)
		}
	}
}
