package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// This file holds server.yaml, the configuration of `shoal server`, the
// control plane of a fleet: the admin API that people and CI call, the
// fleet port that agents join and talk to, and the balancer in front of
// every app's instances. Relative paths are resolved against the
// directory of the file.

// ServerFile is a loaded, validated server.yaml.
type ServerFile struct {
	// DataDir holds the server's store (shoal.db: apps, releases, hosts,
	// join tokens, events), its fleet CA (ca/), the artifacts deploys
	// upload, the admin token and admin URL files. Default:
	// /var/lib/shoal/server.
	DataDir string `yaml:"data_dir"`
	// Admin is the admin API and the dashboard.
	Admin ServerAdmin `yaml:"admin"`
	// Fleet is the listener agents use.
	Fleet ServerFleet `yaml:"fleet"`
	// Balancer is the one plain HTTP listener in front of every app.
	Balancer ServerBalancer `yaml:"balancer"`
	// HostPools are elastic hosts made through a cloud API (issue 17);
	// none by default.
	HostPools []HostPool `yaml:"host_pools"`
	// Cluster makes this server one of a Raft cluster (issue 14); nil:
	// the server stands alone.
	Cluster *ServerCluster `yaml:"cluster"`

	// File is the absolute path the file was loaded from.
	File string `yaml:"-"`
}

// ServerAdmin is the admin API of `shoal server`.
type ServerAdmin struct {
	// Listen is the admin API's and the dashboard's address. Default
	// "127.0.0.1:7440". Every request needs the admin token; on an
	// address that is not loopback the API is also served over TLS, with
	// a certificate from the fleet CA (clients check it with the CA pin
	// that the server prints when it starts: --ca-pin).
	Listen string `yaml:"listen"`
}

// ServerFleet is the listener that agents join and talk to.
type ServerFleet struct {
	// Listen is where agents join (with a token), renew their
	// certificates, say hello and fetch artifacts, over TLS with the fleet
	// CA (mutual TLS once joined). Default ":7443".
	Listen string `yaml:"listen"`
	// URL is how agents reach Listen (agent.yaml's server), an https URL
	// with a host and no path, such as https://10.0.0.1:7443; the fleet
	// listener's certificate names its host. Required unless Listen is a
	// loopback address with a port; empty then means https:// and the
	// address Listen is bound to (its real port when Listen's is 0).
	URL string `yaml:"url"`
	// LostAfter is how long a host's heartbeats may fail before it is
	// declared unreachable and its instances are replaced elsewhere.
	// Default 5s; more than Heartbeat.
	LostAfter Duration `yaml:"lost_after"`
	// StartGrace is how much longer than LostAfter a host may go without
	// an answer when the server has not heard from it since it started
	// (or since its term as the cluster's leader began). Default 5s; 0 or
	// more.
	StartGrace Duration `yaml:"start_grace"`
	// Heartbeat is how often the server checks each host. Default 1s.
	Heartbeat Duration `yaml:"heartbeat"`
}

// ServerBalancer is the server's balancer.
type ServerBalancer struct {
	// Listen is the one plain HTTP listener for every app's routes
	// (shoal.yaml's balancer.hosts and balancer.path choose an app).
	// Default ":80".
	Listen string `yaml:"listen"`
	// DrainTimeout is how long a removed instance keeps its requests and
	// WebSockets in flight when the server stops. Default 10s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Sticky configures the sticky cookies' key.
	Sticky ServerSticky `yaml:"sticky"`
	// TLSListen is a TLS listener for every app's routes, serving the
	// certificates of ACME (HTTP/2 offered). Optional; needs acme.
	TLSListen string `yaml:"tls_listen"`
	// ACME obtains and renews certificates for the apps' host names; the
	// balancer nodes that follow this server serve them too (on their
	// listeners with acme: true). Optional.
	ACME *ServerACME `yaml:"acme"`
}

// ServerSticky is where the key of the apps' sticky cookies comes from.
type ServerSticky struct {
	// SecretFile holds the key that signs every app's sticky cookie: at
	// least 16 bytes (surrounding whitespace trimmed). Optional: without
	// it, the server keeps one generated key per app in its store. A file
	// lets several balancers share the key.
	SecretFile string `yaml:"secret_file"`

	secret []byte // read from SecretFile; nil when unset
}

// Secret returns the key read from secret_file, or nil when none is set.
func (s ServerSticky) Secret() []byte {
	if s.secret == nil {
		return nil
	}
	return append([]byte(nil), s.secret...)
}

// Defaults of server.yaml, documented in docs/configuration.md.
const (
	DefaultServerDataDir       = "/var/lib/shoal/server"
	DefaultServerAdminListen   = "127.0.0.1:7440"
	DefaultServerFleetListen   = ":7443"
	DefaultServerBalancer      = ":80"
	DefaultServerLostAfter     = 5 * time.Second
	DefaultServerStartGrace    = 5 * time.Second
	DefaultServerHeartbeat     = time.Second
	DefaultServerDrainTimeout  = 10 * time.Second
	defaultServerFleetURLNotes = "such as https://10.0.0.1:7443"
)

// LoadServer reads and validates the server.yaml at path. On any problem
// it returns a nil *ServerFile and a Problems error listing every problem
// with file:line:column.
func LoadServer(path string) (*ServerFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read server config: %w", err)
	}
	return ParseServer(path, data)
}

// ParseServer validates data as the server.yaml named file (used in
// messages and as the base for relative paths). See LoadServer.
func ParseServer(file string, data []byte) (*ServerFile, error) {
	var s ServerFile
	d := decode(file, data, &s)
	if len(d.probs) > 0 {
		return nil, d.sorted()
	}
	var resolve func(string) string
	s.File, resolve = fileResolver(file)
	set := func(path string, apply func()) {
		if !d.has(path) {
			apply()
		}
	}
	set("data_dir", func() { s.DataDir = DefaultServerDataDir })
	set("admin.listen", func() { s.Admin.Listen = DefaultServerAdminListen })
	set("fleet.listen", func() { s.Fleet.Listen = DefaultServerFleetListen })
	set("fleet.lost_after", func() { s.Fleet.LostAfter = Duration(DefaultServerLostAfter) })
	set("fleet.heartbeat", func() { s.Fleet.Heartbeat = Duration(DefaultServerHeartbeat) })
	set("fleet.start_grace", func() { s.Fleet.StartGrace = Duration(DefaultServerStartGrace) })
	set("balancer.listen", func() { s.Balancer.Listen = DefaultServerBalancer })
	set("balancer.drain_timeout", func() { s.Balancer.DrainTimeout = Duration(DefaultServerDrainTimeout) })

	if s.DataDir == "" {
		d.errorf("data_dir", "must not be empty")
	}
	s.DataDir = resolve(s.DataDir)
	listens := map[string]string{}
	for _, l := range []struct{ path, addr string }{
		{"admin.listen", s.Admin.Listen}, {"fleet.listen", s.Fleet.Listen}, {"balancer.listen", s.Balancer.Listen},
		{"balancer.tls_listen", s.Balancer.TLSListen},
	} {
		if l.addr == "" && l.path == "balancer.tls_listen" {
			continue
		}
		if err := checkListen(l.addr); err != nil {
			d.errorf(l.path, "%v", err)
			continue
		}
		if other, ok := listens[l.addr]; ok && !strings.HasSuffix(l.addr, ":0") {
			d.errorf(l.path, "%s listens on %s already", other, l.addr)
		}
		listens[l.addr] = l.path
	}
	s.Fleet.URL = strings.TrimSuffix(s.Fleet.URL, "/")
	if s.Fleet.URL == "" {
		if _, ok := LoopbackPort(s.Fleet.Listen); !ok && checkListen(s.Fleet.Listen) == nil {
			d.errorf("fleet.url", "is required: the https URL agents reach fleet.listen (%s) at, %s", s.Fleet.Listen, defaultServerFleetURLNotes)
		}
	} else if u, err := url.Parse(s.Fleet.URL); err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Path != "" || u.RawQuery != "" {
		d.errorf("fleet.url", "must be an https URL with a host and no path, %s; got %q", defaultServerFleetURLNotes, s.Fleet.URL)
	}
	if s.Fleet.Heartbeat <= 0 {
		d.errorf("fleet.heartbeat", "must be more than 0, got %s", s.Fleet.Heartbeat.D())
	} else if s.Fleet.LostAfter <= s.Fleet.Heartbeat {
		d.errorf("fleet.lost_after", "must be more than fleet.heartbeat (%s), got %s", s.Fleet.Heartbeat.D(), s.Fleet.LostAfter.D())
	}
	if s.Fleet.StartGrace < 0 {
		d.errorf("fleet.start_grace", "must be 0 or more, got %s", s.Fleet.StartGrace.D())
	}
	if s.Balancer.DrainTimeout <= 0 {
		d.errorf("balancer.drain_timeout", "must be more than 0, got %s", s.Balancer.DrainTimeout.D())
	}
	if f := s.Balancer.Sticky.SecretFile; f != "" {
		s.Balancer.Sticky.SecretFile = resolve(f)
		key, err := readStickySecret(s.Balancer.Sticky.SecretFile, f)
		if err != nil {
			d.errorf("balancer.sticky.secret_file", "%v", err)
		}
		s.Balancer.Sticky.secret = key
	}
	checkHostPools(d, &s, resolve)
	checkACME(&s, d, resolve)
	checkCluster(d, &s, resolve)
	if len(d.probs) > 0 {
		return nil, d.sorted()
	}
	return &s, nil
}

// checkListen checks an address to bind: host:port (or :port), the host
// an IP address or localhost, the port a number.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q (use host:port, such as 127.0.0.1:7440 or :7443)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q in %q", port, addr)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("invalid host %q in %q (use an IP address, localhost, or nothing for every address)", host, addr)
		}
	}
	return nil
}

// LoopbackPort reports whether addr is a loopback host with a port
// (127.0.0.1:7443, [::1]:7443, localhost:7443), and returns it as
// host:port with localhost written 127.0.0.1.
func LoopbackPort(addr string) (string, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", false
	}
	if host == "localhost" {
		return net.JoinHostPort("127.0.0.1", port), true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return "", false
	}
	return net.JoinHostPort(ip.String(), port), true
}
