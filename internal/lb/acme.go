package lb

import (
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Certificates and HTTP-01 challenges that an ACME client gives the
// balancer while it serves (issue 13: certificates shared by every
// balancer node). The balancer does not speak ACME: `shoal server` does
// (internal/acme) and sets them on its own balancer, and balancer nodes
// receive them from the server and set them on theirs.

// ManagedCert is a certificate chain and its key in PEM, for the names it
// was issued for. The balancer serves it on every listener with Managed
// set, to clients whose SNI name is one of Names.
type ManagedCert struct {
	// Names are the DNS names of the certificate (exact names).
	Names []string
	// CertPEM is the leaf first, then the intermediates.
	CertPEM []byte
	// KeyPEM is the certificate's private key.
	KeyPEM []byte
}

// managedSet is the parsed set served by handshakes; immutable once
// published.
type managedSet struct {
	src    []ManagedCert
	byName map[string]*tls.Certificate
}

// SetCertificates replaces the managed certificates whole: a handshake
// sees the old set or the new one. Each pair is parsed and its key
// checked against its certificate; any failure is an error naming the
// certificate, and the served set stays as it was. A nil or empty list
// serves none. Safe for concurrent use; it notifies Changed when the set
// differs.
func (b *Balancer) SetCertificates(certs []ManagedCert) error {
	set := &managedSet{byName: map[string]*tls.Certificate{}}
	for i, c := range certs {
		pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		if err != nil {
			return fmt.Errorf("certificate %d (%s): %w", i, strings.Join(c.Names, ", "), err)
		}
		for _, n := range c.Names {
			set.byName[strings.ToLower(n)] = &pair
		}
		set.src = append(set.src, ManagedCert{Names: slices.Clone(c.Names),
			CertPEM: slices.Clone(c.CertPEM), KeyPEM: slices.Clone(c.KeyPEM)})
	}
	if old := b.managed.Swap(set); !sameManaged(old, set) {
		b.changes.notify()
	}
	return nil
}

func sameManaged(a, b *managedSet) bool {
	var as, bs []ManagedCert
	if a != nil {
		as = a.src
	}
	if b != nil {
		bs = b.src
	}
	return slices.EqualFunc(as, bs, func(x, y ManagedCert) bool {
		return slices.Equal(x.Names, y.Names) && string(x.CertPEM) == string(y.CertPEM) && string(x.KeyPEM) == string(y.KeyPEM)
	})
}

// Certificates returns a copy of the managed certificates, in the order
// last set.
func (b *Balancer) Certificates() []ManagedCert {
	set := b.managed.Load()
	if set == nil {
		return nil
	}
	out := make([]ManagedCert, len(set.src))
	for i, c := range set.src {
		out[i] = ManagedCert{Names: slices.Clone(c.Names), CertPEM: slices.Clone(c.CertPEM), KeyPEM: slices.Clone(c.KeyPEM)}
	}
	return out
}

// managedFor returns the managed certificate for the SNI name, or nil.
func (b *Balancer) managedFor(name string) *tls.Certificate {
	set := b.managed.Load()
	if set == nil || name == "" {
		return nil
	}
	return set.byName[strings.ToLower(strings.TrimSuffix(name, "."))]
}

// SetChallenges replaces the pending HTTP-01 challenges whole: token to
// key authorization (RFC 8555 8.3). While a token is set, every listener
// answers GET /.well-known/acme-challenge/<token> itself, before any
// route, with 200 and the key authorization; other tokens under that
// path are routed as usual (an app may run its own ACME client). Safe for
// concurrent use; it notifies Changed when the set differs.
func (b *Balancer) SetChallenges(tokens map[string]string) {
	var next map[string]string
	if len(tokens) > 0 {
		next = maps.Clone(tokens)
	}
	var old map[string]string
	if p := b.challenges.Swap(&next); p != nil {
		old = *p
	}
	if !maps.Equal(old, next) {
		b.changes.notify()
	}
}

// Challenges returns a copy of the pending HTTP-01 challenges.
func (b *Balancer) Challenges() map[string]string {
	if p := b.challenges.Load(); p != nil && len(*p) > 0 {
		return maps.Clone(*p)
	}
	return nil
}

// acmeChallengePrefix is where an ACME server fetches an HTTP-01 key
// authorization (RFC 8555 8.3).
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// challengeAnswer is the rule both paths follow for HTTP-01: the key
// authorization of the token that path asks for, when a challenge for it
// is pending. The fast path hands any request under the prefix to the
// net/http path while challenges are pending (mayBeChallenge), which
// answers it here, so the answer is written in one place.
func (b *Balancer) challengeAnswer(method, path string) (string, bool) {
	if method != "GET" && method != "HEAD" {
		return "", false
	}
	token, ok := strings.CutPrefix(path, acmeChallengePrefix)
	if !ok || token == "" {
		return "", false
	}
	p := b.challenges.Load()
	if p == nil {
		return "", false
	}
	ka, ok := (*p)[token]
	return ka, ok
}

// mayBeChallenge reports, without allocating, whether a request for path
// may be an HTTP-01 challenge the balancer answers itself.
func (b *Balancer) mayBeChallenge(path string) bool {
	p := b.challenges.Load()
	return p != nil && len(*p) > 0 && strings.HasPrefix(path, acmeChallengePrefix)
}
