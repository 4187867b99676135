package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// ServerCluster makes `shoal server` one of a cluster of three or five
// servers that hold one desired state, replicated with Raft (issue 14;
// docs/ARCHITECTURE.md "Controllers with Raft"). Without it the server
// stands alone. Every server of a cluster needs the same fleet CA and
// admin token: a server started with Join fetches them from the cluster
// (or copy the first server's data_dir/ca/ and data_dir/admin.token to
// the others before their first start, and add them with `shoal servers
// add`).
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
	// Join makes this server join an existing cluster at its first
	// start (an empty data_dir): the admin URL of any of its servers, or
	// a list of several (tried in order). The server fetches the
	// cluster's fleet CA there (GET /v1/cluster/ca), with the admin
	// token of JoinTokenFile, installs it and the token in its data_dir,
	// then asks the leader to add it as a voter (POST /v1/servers) and
	// catches up. Once this server has Raft state (it was added) a start
	// only checks the CA against the cluster's when a join URL answers,
	// so the key may stay set. Not with Bootstrap. `shoal server --join`
	// sets it.
	Join URLList `yaml:"join"`
	// JoinTokenFile holds the cluster's admin token (the first server's
	// data_dir/admin.token): required with Join. A file, not a flag's
	// value, so that the token stays out of the process list.
	JoinTokenFile string `yaml:"join_token_file"`
	// JoinCAPin is the cluster's fleet CA pin (sha256:..., as `shoal
	// server` prints it in its ready line): required when a Join URL is
	// https, whose certificate must then come from that CA, so that
	// neither the token nor the CA's key is given to anyone else. An
	// http Join URL (an admin API on loopback) must be a loopback one.
	JoinCAPin string `yaml:"join_ca_pin"`
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
func checkCluster(d *document, s *ServerFile, resolve func(string) string) {
	c := s.Cluster
	if c == nil {
		return
	}
	if len(c.Join) > 0 {
		for i, raw := range c.Join {
			if u, err := url.Parse(raw); err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
				d.errorf(fmt.Sprintf("cluster.join[%d]", i), "must be a server's admin URL with a host and no path, such as https://10.0.0.1:7444; got %q", raw)
			}
			c.Join[i] = strings.TrimSuffix(raw, "/")
		}
		c.JoinTokenFile = resolve(c.JoinTokenFile)
	}
	for _, p := range c.CheckJoin() {
		d.errorf(p.Path, "%s", p.Msg)
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

// CheckJoin reports the problems of the join settings (Join,
// JoinTokenFile, JoinCAPin, with Bootstrap), each with its key; the CLI
// checks them again after its flags (--join, --join-token-file,
// --ca-pin) set them. The URLs' form is checked by the file's loader.
func (c *ServerCluster) CheckJoin() []Problem {
	var out []Problem
	bad := func(path, format string, a ...any) {
		out = append(out, Problem{Path: path, Msg: fmt.Sprintf(format, a...)})
	}
	if len(c.Join) == 0 {
		if c.JoinTokenFile != "" || c.JoinCAPin != "" {
			bad("cluster.join", "is required with cluster.join_token_file and cluster.join_ca_pin: the admin URL of a server of the cluster to join")
		}
		return out
	}
	if c.Bootstrap {
		bad("cluster.bootstrap", "must not be set with cluster.join: a server either forms a new cluster or joins one")
	}
	if c.JoinTokenFile == "" {
		bad("cluster.join_token_file", "is required with cluster.join: a file holding the cluster's admin token (the first server's data_dir/admin.token)")
	}
	for i, raw := range c.Join {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			continue // reported by the loader
		}
		switch {
		case u.Scheme == "https" && c.JoinCAPin == "":
			bad("cluster.join_ca_pin", "is required to join over https (%s): the cluster's CA pin, sha256:... as `shoal server` prints it", raw)
		case u.Scheme == "http":
			if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
				bad(fmt.Sprintf("cluster.join[%d]", i), "%s is plain http on a network address: join over the server's https admin URL with cluster.join_ca_pin (the CA's key must not cross a network in clear)", raw)
			}
		case u.Scheme != "https":
			bad(fmt.Sprintf("cluster.join[%d]", i), "must be an https admin URL (or http on loopback), such as https://10.0.0.1:7444; got %q", raw)
		}
	}
	if c.JoinCAPin != "" && !pinRe.MatchString(c.JoinCAPin) {
		bad("cluster.join_ca_pin", "want sha256: and 64 lower-case hex characters (shoal server prints it); got %q", c.JoinCAPin)
	}
	return out
}

var pinRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
