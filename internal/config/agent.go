package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// This file holds agent.yaml, the configuration of `shoal agent` on an app
// host of a fleet. `shoal setup` writes it (to /etc/shoal/agent.yaml by
// default); an operator may write it by hand. Relative paths are resolved
// against the directory of the file.

// AgentFile is a loaded, validated agent.yaml.
type AgentFile struct {
	// Server is the URL of the server's agent-facing listener
	// (https://host:port, its fleet.url), which the agent joins, says
	// hello to, fetches artifacts from and renews its certificate with;
	// or a list of the fleet URLs of every server of a cluster. With a
	// list the agent uses one at a time and moves to the next when one
	// cannot be reached (any server leads it to the leader), so it keeps
	// working while a server is down. Required.
	Server URLList `yaml:"server"`
	// JoinTokenFile holds the one-time join token (`shoal join-token`
	// prints one). It is read only while the agent has no certificate;
	// after joining, the agent never reads it again and the token is used
	// up. Absolute after loading; "" when the agent has joined already and
	// the key is left out.
	JoinTokenFile string `yaml:"join_token_file"`
	// Name is the host's name in the fleet: lowercase letters, digits,
	// '.' and '-', 1 to 63 characters. Default: the machine's host name,
	// lowercased.
	Name string `yaml:"name"`
	// Zone is the host's zone label; the server spreads each group's
	// instances over the zones of each region. Default: "" (one zone).
	Zone string `yaml:"zone"`
	// Region is the host's region label, such as nyc1; the server spreads
	// each group over regions, then over the zones of each. Default: ""
	// (one region).
	Region string `yaml:"region"`
	// Listen is where the agent serves its API to the server, over mutual
	// TLS. Default: ":7441".
	Listen string `yaml:"listen"`
	// Advertise is the IP address the server and the balancer reach this
	// host and its instances at; instances listen on it. Required (a host
	// often has several addresses, and guessing picks the wrong one).
	Advertise string `yaml:"advertise"`
	// DataDir holds the agent's certificate and key, artifacts, unpacked
	// releases and instance folders. Default: /var/lib/shoal/agent.
	DataDir string `yaml:"data_dir"`
	// CPU (cores) and Memory (bytes, "512MiB", "4GiB") are what the
	// server may place on this host. Default: all the machine has,
	// measured at start.
	CPU    float64 `yaml:"cpu"`
	Memory Size    `yaml:"memory"`
	// DockerHost is the Docker engine that runs the host's container
	// instances (apps with runtime: docker): "unix:///path/docker.sock"
	// or "tcp://host:port". Default: DOCKER_HOST, else
	// unix:///var/run/docker.sock. "none" runs no containers. An engine
	// that does not answer when the agent starts is logged, and the
	// agent refuses container instances, naming it (the server places
	// them on other hosts).
	DockerHost string `yaml:"docker_host"`

	// File is the absolute path the file was loaded from.
	File string `yaml:"-"`
}

// DockerHostNone is agent.yaml's docker_host for a host that runs no
// containers.
const DockerHostNone = "none"

// DefaultAgentListen is the agent API's default address.
const DefaultAgentListen = ":7441"

// DefaultAgentDataDir is the agent's default data directory.
const DefaultAgentDataDir = "/var/lib/shoal/agent"

// nodeNameRe is a valid host (node) name in a fleet.
var nodeNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// ValidNodeName reports whether name can name a host of a fleet.
func ValidNodeName(name string) bool { return nodeNameRe.MatchString(name) }

// LoadAgent reads and validates the agent.yaml at path. On any problem it
// returns a nil *AgentFile and a Problems error listing every problem with
// file:line:column.
func LoadAgent(path string) (*AgentFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent config: %w", err)
	}
	return ParseAgent(path, data)
}

// fileResolver returns file's absolute path (file itself when it has
// none) and a function that makes a path relative to file's folder
// absolute (an empty or absolute path is returned as it is): the rule of
// agent.yaml and server.yaml for the paths they name.
func fileResolver(file string) (abs string, resolve func(string) string) {
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	dir := filepath.Dir(abs)
	return abs, func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
}

// ParseAgent validates data as the agent.yaml named file (used in messages
// and as the base for relative paths). See LoadAgent.
func ParseAgent(file string, data []byte) (*AgentFile, error) {
	var a AgentFile
	d := decode(file, data, &a)
	if len(d.probs) > 0 {
		return nil, d.sorted()
	}
	var resolve func(string) string
	a.File, resolve = fileResolver(file)

	a.Server = checkServerURLs(d, "server", a.Server, "https://10.0.0.1:7440", "the server's agent listener (fleet.url)")
	a.JoinTokenFile = resolve(a.JoinTokenFile)

	if a.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			d.errorf("name", "is not set and the host name is unknown: %v", err)
		}
		a.Name = strings.ToLower(h)
		if !ValidNodeName(a.Name) {
			d.errorf("name", "is not set and the host name %q is not a valid name (lowercase letters, digits, '.' and '-'; up to 63); set name", h)
		}
	} else if !ValidNodeName(a.Name) {
		d.errorf("name", "%q is not a valid name: lowercase letters, digits, '.' and '-', 1 to 63, starting and ending with a letter or digit", a.Name)
	}
	if a.Zone != "" && !ValidNodeName(a.Zone) {
		d.errorf("zone", "%q is not a valid zone: lowercase letters, digits, '.' and '-', up to 63", a.Zone)
	}
	if a.Region != "" && !ValidNodeName(a.Region) {
		d.errorf("region", "%q is not a valid region: lowercase letters, digits, '.' and '-', up to 63", a.Region)
	}

	if a.Listen == "" {
		a.Listen = DefaultAgentListen
	} else if _, port, err := net.SplitHostPort(a.Listen); err != nil || port == "" {
		d.errorf("listen", "must be host:port or :port, got %q", a.Listen)
	}
	switch ip, err := netip.ParseAddr(a.Advertise); {
	case a.Advertise == "":
		d.errorf("advertise", "is required: the IP address the server and the balancer reach this host at")
	case err != nil:
		d.errorf("advertise", "must be an IP address, got %q", a.Advertise)
	case ip.IsUnspecified():
		d.errorf("advertise", "must be an address others can reach, not %s", a.Advertise)
	}
	if a.DataDir == "" {
		a.DataDir = DefaultAgentDataDir
	}
	a.DataDir = resolve(a.DataDir)
	if a.CPU < 0 {
		d.errorf("cpu", "must not be negative, got %v", a.CPU)
	}
	if h := a.DockerHost; h != "" && h != DockerHostNone && !strings.HasPrefix(h, "unix:///") && !strings.HasPrefix(h, "tcp://") {
		d.errorf("docker_host", "must be unix:///path/to/docker.sock, tcp://host:port or %q, got %q", DockerHostNone, h)
	}
	if a.Memory < 0 {
		d.errorf("memory", "must not be negative")
	}
	if len(d.probs) > 0 {
		return nil, d.sorted()
	}
	return &a, nil
}
