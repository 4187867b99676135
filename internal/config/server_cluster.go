package config

import (
	"net"
	"regexp"
	"time"
)

// ServerCluster makes `shoal server` one of a cluster of three or five
// servers that hold one desired state, replicated with Raft (issue 14;
// docs/ARCHITECTURE.md "Controllers with Raft"). Without it the server
// stands alone. Every server of a cluster needs the same fleet CA and
// admin token: copy the first server's data_dir/ca/ and
// data_dir/admin.token to the others before their first start.
type ServerCluster struct {
	// ID names this server in the cluster and stays the same across its
	// restarts: lowercase letters, digits and '-', 1 to 40. Required.
	ID string `yaml:"id"`
	// Listen is the address of Raft's own listener (mutual TLS between
	// servers only, with the fleet CA), such as 10.0.0.1:7450. Required.
	Listen string `yaml:"listen"`
	// Advertise is the host:port the other servers dial to reach Listen.
	// Default: Listen, which then needs a host (not ":7450"); with port 0
	// (tests) the real port.
	Advertise string `yaml:"advertise"`
	// Bootstrap forms a new cluster of this server alone at its first
	// start (an empty data_dir); the others start without it and are
	// added by `shoal servers add ID ADDRESS` on any server. It is ignored
	// once the server has Raft state, so it may stay set.
	Bootstrap bool `yaml:"bootstrap"`
	// ElectionTimeout is how long a follower waits without hearing from
	// the leader before it starts an election (raft's heartbeat and
	// election timeouts; the leader's lease is half of it), so about how
	// long a dead leader goes unnoticed. Default 1s; raise it on servers
	// whose scheduling stalls (a busy or throttled machine), where a
	// leader that misses its heartbeats is deposed needlessly.
	ElectionTimeout Duration `yaml:"election_timeout"`
}

// DefaultClusterElectionTimeout is cluster.election_timeout's default
// (hashicorp/raft's).
const DefaultClusterElectionTimeout = time.Second

var clusterIDRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

// checkCluster reports the problems of s.Cluster, if set.
func checkCluster(d *document, s *ServerFile) {
	c := s.Cluster
	if c == nil {
		return
	}
	if !d.has("cluster.election_timeout") {
		c.ElectionTimeout = Duration(DefaultClusterElectionTimeout)
	} else if c.ElectionTimeout < Duration(100*time.Millisecond) {
		d.errorf("cluster.election_timeout", "must be at least 100ms, got %s", c.ElectionTimeout.D())
	}
	if !clusterIDRe.MatchString(c.ID) {
		d.errorf("cluster.id", "must be 1 to 40 lowercase letters, digits or '-' (not first or last), such as s1; got %q", c.ID)
	}
	if err := checkListen(c.Listen); err != nil {
		d.errorf("cluster.listen", "%v", err)
		return
	}
	for _, other := range []struct{ path, addr string }{
		{"admin.listen", s.Admin.Listen}, {"fleet.listen", s.Fleet.Listen}, {"balancer.listen", s.Balancer.Listen},
		{"balancer.tls_listen", s.Balancer.TLSListen},
	} {
		if other.addr == c.Listen && !isPortZero(c.Listen) {
			d.errorf("cluster.listen", "%s listens on %s already", other.path, c.Listen)
		}
	}
	if c.Advertise == "" {
		if host, _, _ := net.SplitHostPort(c.Listen); host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
			d.errorf("cluster.advertise", "is required when cluster.listen (%s) has no host: the host:port the other servers dial", c.Listen)
		}
		return
	}
	host, port, err := net.SplitHostPort(c.Advertise)
	if err != nil || host == "" || port == "" || port == "0" {
		d.errorf("cluster.advertise", "must be a host:port the other servers dial, such as 10.0.0.1:7450; got %q", c.Advertise)
	}
}

func isPortZero(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}
