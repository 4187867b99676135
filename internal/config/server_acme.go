package config

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// ServerACME is server.yaml's balancer.acme: certificates obtained and
// renewed from an ACME CA (Let's Encrypt by default) by the server, for
// the host names its balancer and every balancer node serve (issue 13).
// The server is the one ACME client; the CA's HTTP-01 validation request
// may reach any balancer, and each answers it.
type ServerACME struct {
	// Email is the ACME account's contact address, where the CA sends
	// expiry warnings. Optional.
	Email string `yaml:"email"`
	// Directory is the ACME directory URL. Default: Let's Encrypt's
	// production directory, https://acme-v02.api.letsencrypt.org/directory
	// (its staging one is
	// https://acme-staging-v02.api.letsencrypt.org/directory).
	Directory string `yaml:"directory"`
	// CARoot is a PEM file of the root(s) that sign the directory's own
	// TLS certificate, for a private CA or a test server such as pebble.
	// Default: the system's roots.
	CARoot string `yaml:"ca_root"`
	// Hosts are the DNS names to obtain certificates for, one certificate
	// each: exact names (HTTP-01 cannot validate a wildcard), each
	// resolving to the balancers (or their floating address) on port 80.
	// Default (none listed): the exact host names of the apps' routes
	// (shoal.yaml's balancer.hosts), followed as apps are deployed;
	// wildcards and names of one label there are left out.
	Hosts []string `yaml:"hosts"`

	roots *x509.CertPool // from CARoot; nil: the system's
}

// FromRoutes reports whether the host names are the routes' (hosts not
// listed).
func (a *ServerACME) FromRoutes() bool { return len(a.Hosts) == 0 }

// Roots returns the pool read from ca_root, or nil for the system's roots.
func (a *ServerACME) Roots() *x509.CertPool { return a.roots }

// DefaultACMEDirectory is Let's Encrypt's production directory.
const DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// checkACME validates and completes balancer.acme and balancer.tls_listen.
func checkACME(s *ServerFile, d *document, resolve func(string) string) {
	b := &s.Balancer
	a := b.ACME
	if b.TLSListen != "" && a == nil {
		d.errorf("balancer.tls_listen", "needs balancer.acme: the TLS listener serves the certificates obtained through ACME")
	}
	if a == nil {
		return
	}
	if a.Directory == "" {
		a.Directory = DefaultACMEDirectory
	}
	if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		d.errorf("balancer.acme.directory", "must be an https URL, such as %s; got %q", DefaultACMEDirectory, a.Directory)
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t<>")) {
		d.errorf("balancer.acme.email", "%q is not an email address", a.Email)
	}
	if a.CARoot != "" {
		a.CARoot = resolve(a.CARoot)
		pemBytes, err := os.ReadFile(a.CARoot)
		switch {
		case err != nil:
			d.errorf("balancer.acme.ca_root", "%v", err)
		default:
			a.roots = x509.NewCertPool()
			if !a.roots.AppendCertsFromPEM(pemBytes) {
				d.errorf("balancer.acme.ca_root", "%s holds no PEM certificate", a.CARoot)
			}
		}
	}
	seen := map[string]bool{}
	for i, h := range a.Hosts {
		path := fmt.Sprintf("balancer.acme.hosts[%d]", i)
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		a.Hosts[i] = h
		if err := CheckACMEHost(h); err != nil {
			d.errorf(path, "%v", err)
			continue
		}
		if seen[h] {
			d.errorf(path, "%q is listed twice", h)
		}
		seen[h] = true
	}
	if b.TLSListen != "" {
		if err := checkListen(b.TLSListen); err != nil {
			d.errorf("balancer.tls_listen", "%v", err)
		}
	}
}

// CheckACMEHost checks a name a certificate can be obtained for through
// HTTP-01: a lower-case DNS name of two labels or more, no wildcard, no
// IP address.
func CheckACMEHost(h string) error {
	if strings.HasPrefix(h, "*.") {
		return fmt.Errorf("%q is a wildcard: HTTP-01 validates exact names only; list each name", h)
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return fmt.Errorf("%q is an IP address: certificates are obtained for DNS names", h)
	}
	labels := strings.Split(h, ".")
	if len(h) > 253 || len(labels) < 2 {
		return fmt.Errorf("%q is not a fully qualified DNS name (such as app.example.com)", h)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not a valid DNS name (label %q)", h, l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a valid DNS name (character %q)", h, c)
			}
		}
	}
	return nil
}
