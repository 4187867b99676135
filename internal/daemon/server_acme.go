package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/shoal-dev/shoal/internal/acme"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/lb"
)

// Certificates from ACME, shared by every balancer (issue 13). The server
// is the fleet's one ACME client (internal/acme, server.yaml's
// balancer.acme): what it obtains goes to its own balancer
// (lb.Balancer.SetCertificates), which serves it on balancer.tls_listen,
// and from there, like the routes and pools, into the configuration the
// balancer nodes follow (server_lbstream.go), which serve it on their
// listeners marked acme. A pending HTTP-01 challenge takes the same way
// (lb.Balancer.SetChallenges), and the CA is told to validate only once
// every node that follows has applied it (or after 15 s), so the CA's
// request is answered by whichever balancer it reaches.

// ServerTLSListener is the name of the server's TLS balancer listener
// (balancer.tls_listen).
const ServerTLSListener = "https"

// ACMEDir is the directory of the ACME account keys and certificates
// under the server's data directory.
const ACMEDir = "acme"

// openACME loads the ACME state (a damaged file refuses the start, named)
// and gives the certificates already held to the balancer.
func (s *Server) openACME() error {
	a := s.cfg.Balancer.ACME
	if a == nil {
		return nil
	}
	// The balancer nodes that joined before this run are awaited by the
	// first challenges until they call again (lbStream.expect).
	lbNodes, err := s.storedLBNodes()
	if err != nil {
		return err
	}
	s.lbs.expect(lbNodes)
	pub := &challengePublisher{bal: s.bal, lbs: s.lbs, log: s.log.With("part", "acme")}
	var setErr error
	m, err := acme.Open(acme.Config{
		Directory: a.Directory, Email: a.Email, Roots: a.Roots(), Hosts: a.Hosts,
		Dir:     filepath.Join(s.cfg.DataDir, ACMEDir),
		Publish: pub.publish,
		OnCertificates: func(cs []acme.Cert) {
			mc := make([]lb.ManagedCert, 0, len(cs))
			for _, c := range cs {
				mc = append(mc, lb.ManagedCert{Names: c.Names, CertPEM: c.CertPEM, KeyPEM: c.KeyPEM})
			}
			if err := s.bal.SetCertificates(mc); err != nil {
				// acme checked each pair already: not expected.
				setErr = err
				s.log.Error("certificates from ACME refused by the balancer", "error", err)
			}
		},
		Logger: s.log.With("part", "acme"),
	})
	if err != nil {
		return err
	}
	if setErr != nil {
		return fmt.Errorf("acme certificates: %w", setErr)
	}
	s.acme = m
	return nil
}

// challengePublisher puts the pending challenges on the server's
// balancer and waits, when a token was added, until every following
// node has applied them.
type challengePublisher struct {
	bal *lb.Balancer
	lbs *lbStream
	log *slog.Logger

	mu   sync.Mutex
	last map[string]string
}

func (p *challengePublisher) publish(ctx context.Context, tokens map[string]string) error {
	p.mu.Lock()
	added := false
	for t := range tokens {
		if _, ok := p.last[t]; !ok {
			added = true
		}
	}
	p.last = tokens
	p.mu.Unlock()
	p.bal.SetChallenges(tokens)
	v := p.lbs.sync()
	if !added {
		return nil
	}
	return p.lbs.delivered(ctx, v)
}

// followRouteHosts keeps the ACME hosts at the routes' host names
// (balancer.acme without hosts) until ctx ends: each change of the
// balancer is a chance that an app's balancer.hosts changed.
func (s *Server) followRouteHosts(ctx context.Context) {
	for {
		ch := s.bal.Changed()
		s.acme.SetHosts(routeHosts(s.bal.Config().Routes))
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// routeHosts is the exact host names of routes that a certificate can be
// obtained for, lower-cased, sorted, once each: no catch-all, no
// wildcard, no name of one label (config.CheckACMEHost).
func routeHosts(routes []lb.Route) []string {
	var out []string
	for _, r := range routes {
		h := strings.ToLower(r.Host)
		if h == "" || config.CheckACMEHost(h) != nil || slices.Contains(out, h) {
			continue
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// storedLBNodes names the balancer nodes that joined the fleet: the
// nodes of the used join tokens of role lb in the store.
func (s *Server) storedLBNodes() ([]string, error) {
	toks, err := s.st.Tokens().List()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range toks {
		if t.Used && t.Role == api.RoleLB && t.UsedBy != "" {
			names = append(names, t.UsedBy)
		}
	}
	return names, nil
}
