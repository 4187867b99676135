package setup

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Target is the host to set up and the account to log in with.
type Target struct {
	User string
	Host string // a host name or an IP address, without brackets
	Port int    // 22 when zero
}

// ParseTarget parses ssh://user@host[:port] (an IPv6 address in brackets).
// The user is required: setup never guesses the account it changes a host
// with.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "ssh" || u.Opaque != "" {
		return Target{}, fmt.Errorf("target %q: want ssh://user@host[:port]", s)
	}
	if u.User == nil || u.User.Username() == "" {
		return Target{}, fmt.Errorf("target %q: no user: want ssh://user@host[:port]", s)
	}
	if _, hasPass := u.User.Password(); hasPass {
		return Target{}, fmt.Errorf("target %q: a password in the URL is not supported; use a key (SSH agent or -i)", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("target %q: want ssh://user@host[:port], with no path or query", s)
	}
	t := Target{User: u.User.Username(), Host: u.Hostname(), Port: 22}
	if t.Host == "" {
		return Target{}, fmt.Errorf("target %q: no host: want ssh://user@host[:port]", s)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("target %q: port %q is not 1 to 65535", s, p)
		}
		t.Port = n
	}
	if strings.ContainsAny(t.User, " \t\r\n") {
		return Target{}, fmt.Errorf("target %q: user name contains white space", s)
	}
	return t, nil
}

// Addr is host:port, as dialed and as looked up in known_hosts.
func (t Target) Addr() string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// String is the target as ssh://user@host:port.
func (t Target) String() string { return "ssh://" + t.User + "@" + t.Addr() }
