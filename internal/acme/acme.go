// Package acme obtains and renews TLS certificates from an ACME CA (RFC
// 8555: Let's Encrypt, or any CA that speaks it) with HTTP-01 challenges,
// for `shoal server`, the one ACME client of a fleet (issue 13). It owns
// the account key and the certificates on disk (storage.go) and the
// renewal schedule; it answers no request itself: the pending challenges
// go to Config.Publish (the server puts them on its balancer and in the
// configuration balancer nodes follow, so whichever node the CA connects
// to answers), and the certificates to Config.OnCertificates.
//
// Built on golang.org/x/crypto/acme (the protocol only) rather than
// certmagic: the fleet needs its own storage (the server's data
// directory), its own challenge delivery (every balancer node), and its
// own renewal loop (one goroutine owned by Run); certmagic's would be one
// more scheduler, cache and storage abstraction to bend around those.
//
//	for each host:  no certificate, or 2/3 of its life passed, or not due yet
//	                      |                                      |
//	                      v                                      v
//	                  order -> Publish(token) -> Accept -> wait valid -> finalize (new key) -> save -> OnCertificates
//	                      | any failure
//	                      v
//	                  retry after 10 s, doubling to 1 h (the last certificate is served meanwhile)
package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	xacme "golang.org/x/crypto/acme"
)

// LetsEncrypt is the default directory: Let's Encrypt's production CA.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Retry backoff after a failed issuance, per host. Let's Encrypt allows 5
// failed validations per host per hour; starting at 10 s and doubling
// stays under it after the first minutes.
const (
	minRetry = 10 * time.Second
	maxRetry = time.Hour
)

// Cert is one host's certificate: its chain (leaf first) and key in PEM.
type Cert struct {
	Names               []string
	CertPEM, KeyPEM     []byte
	NotBefore, NotAfter time.Time
}

// RenewAt is when c is renewed: after two thirds of its lifetime (30 days
// before the end of a 90-day Let's Encrypt certificate, as certbot and
// Caddy do).
func (c *Cert) RenewAt() time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// due reports whether host needs a new certificate at now: it has none,
// or two thirds of its life have passed.
func due(c *Cert, now time.Time) bool {
	return c == nil || !now.Before(c.RenewAt())
}

// Config configures a Manager.
type Config struct {
	// Directory is the ACME directory URL; "" is LetsEncrypt.
	Directory string
	// Email is the account's contact address; optional.
	Email string
	// Roots verifies the directory's TLS certificate; nil: the system's
	// roots. A private CA or a test server (pebble) sets its own.
	Roots *x509.CertPool
	// Hosts are the DNS names to obtain certificates for, one each, at
	// first; SetHosts changes them. May be empty.
	Hosts []string
	// Dir is where account keys and certificates are kept (created 0700);
	// each directory's files go to a subdirectory named after its host.
	Dir string
	// Publish receives the whole set of pending HTTP-01 challenges (token
	// to key authorization) each time it changes: before the CA is told
	// to validate a token, and again once the token is done. It should
	// return once every balancer that may receive the CA's request
	// answers the tokens, or ctx ends; an error is logged and the
	// validation tried anyway. Required.
	Publish func(ctx context.Context, tokens map[string]string) error
	// OnCertificates receives every certificate held (one per host that
	// has one, in Hosts order) after Open and after each change. It must
	// not block for long. Optional.
	OnCertificates func([]Cert)
	Logger         *slog.Logger
}

// Manager obtains and renews the certificates of Config.Hosts. Open
// loads what is on disk; Run keeps it up to date. Its methods are safe
// for concurrent use.
type Manager struct {
	cfg    Config
	dir    string
	log    *slog.Logger
	client *xacme.Client

	kick chan struct{} // SetHosts wakes Run

	mu     sync.Mutex
	hosts  []string
	certs  map[string]*Cert // of hosts
	tokens map[string]string
}

// Open checks cfg, loads (or creates) the account key and loads the
// certificates kept for cfg.Hosts. A damaged file is a *DamagedError
// naming it; nothing is obtained yet (Run does).
func Open(cfg Config) (*Manager, error) {
	if cfg.Directory == "" {
		cfg.Directory = LetsEncrypt
	}
	if cfg.Publish == nil {
		return nil, errors.New("acme: no Publish")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := storageDir(cfg.Dir, cfg.Directory)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("acme storage: %w", err)
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	key, made, err := loadOrCreateAccountKey(dir)
	if made {
		log.Info("acme account key created", "file", filepath.Join(dir, "account.key"))
	}
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, dir: dir, log: log, certs: map[string]*Cert{}, kick: make(chan struct{}, 1),
		hosts: slices.Clone(cfg.Hosts)}
	for _, h := range cfg.Hosts {
		c, err := loadCert(dir, h)
		if err != nil {
			return nil, err
		}
		if c != nil {
			m.certs[h] = c
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: cfg.Roots, MinVersion: tls.VersionTLS12}
	m.client = &xacme.Client{Key: key, DirectoryURL: cfg.Directory, UserAgent: "shoal",
		HTTPClient: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
	if cfg.OnCertificates != nil {
		cfg.OnCertificates(m.Certificates())
	}
	return m, nil
}

// Certificates returns the certificates held, in Hosts order.
func (m *Manager) Certificates() []Cert {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Cert
	for _, h := range m.hosts {
		if c := m.certs[h]; c != nil {
			out = append(out, *c)
		}
	}
	return out
}

// SetHosts replaces the host names (the routes' names, when the server
// takes them from there). A new host's certificate is loaded from disk
// (or obtained by Run, which it wakes); a removed host's is no longer
// served but stays on disk. A damaged file of a new host is logged at
// Error and that host left out (never overwritten) until the file is
// moved away and the hosts change again or the server restarts.
func (m *Manager) SetHosts(hosts []string) {
	hosts = slices.Clone(hosts)
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	m.mu.Lock()
	if slices.Equal(hosts, m.hosts) {
		m.mu.Unlock()
		return
	}
	var added []string
	for _, h := range hosts {
		if !slices.Contains(m.hosts, h) {
			added = append(added, h)
		}
	}
	m.mu.Unlock()
	loaded := map[string]*Cert{}
	keep := hosts[:0:0]
	for _, h := range hosts {
		if !slices.Contains(added, h) {
			keep = append(keep, h)
			continue
		}
		c, err := loadCert(m.dir, h)
		if err != nil {
			m.log.Error("certificate file refused: not served, not renewed", "host", h, "error", err)
			continue
		}
		keep = append(keep, h)
		if c != nil {
			loaded[h] = c
		}
	}
	m.mu.Lock()
	m.hosts = keep
	for h := range m.certs {
		if !slices.Contains(keep, h) {
			delete(m.certs, h)
		}
	}
	maps.Copy(m.certs, loaded)
	m.mu.Unlock()
	m.log.Info("acme hosts", "hosts", strings.Join(keep, ","))
	if m.cfg.OnCertificates != nil {
		m.cfg.OnCertificates(m.Certificates())
	}
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run obtains and renews until ctx ends. Failures are logged and retried
// (the certificate held, if any, is served meanwhile); Run returns nil
// when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	defer m.client.HTTPClient.CloseIdleConnections()
	retry := map[string]time.Duration{} // host -> current backoff
	next := map[string]time.Time{}      // host -> when to try again after a failure
	registered := false
	for {
		now := time.Now()
		wake := now.Add(24 * time.Hour)
		m.mu.Lock()
		hosts := slices.Clone(m.hosts)
		m.mu.Unlock()
		for _, h := range hosts {
			if ctx.Err() != nil {
				return nil
			}
			m.mu.Lock()
			c := m.certs[h]
			m.mu.Unlock()
			at := next[h]
			if c != nil && c.RenewAt().After(at) {
				at = c.RenewAt()
			}
			if !due(c, now) || now.Before(at) {
				wake = earliest(wake, at)
				continue
			}
			err := m.obtainOne(ctx, h, &registered)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				d := retry[h]
				d = min(max(2*d, minRetry), maxRetry)
				retry[h], next[h] = d, time.Now().Add(d)
				if c != nil {
					m.log.Warn("certificate not renewed: serving the current one, retrying", "host", h,
						"not_after", c.NotAfter, "retry_in", d.String(), "error", err)
				} else {
					m.log.Error("certificate not obtained: retrying", "host", h, "retry_in", d.String(), "error", err)
				}
				wake = earliest(wake, next[h])
				continue
			}
			delete(retry, h)
			delete(next, h)
			m.mu.Lock()
			if c := m.certs[h]; c != nil {
				wake = earliest(wake, c.RenewAt())
			}
			m.mu.Unlock()
		}
		t := time.NewTimer(max(time.Until(wake), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-m.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// obtainOne runs one issuance for host and keeps its result.
func (m *Manager) obtainOne(ctx context.Context, host string, registered *bool) error {
	start := time.Now()
	if !*registered {
		if err := m.register(ctx); err != nil {
			return err
		}
		*registered = true
	}
	c, err := m.obtain(ctx, host)
	if err != nil {
		return err
	}
	if err := saveCert(m.dir, host, c); err != nil {
		return err
	}
	m.mu.Lock()
	if slices.Contains(m.hosts, host) { // not removed meanwhile
		m.certs[host] = c
	}
	m.mu.Unlock()
	m.log.Info("certificate obtained", "host", host, "not_after", c.NotAfter, "renew_at", c.RenewAt(),
		"took", time.Since(start).Round(time.Millisecond).String())
	if m.cfg.OnCertificates != nil {
		m.cfg.OnCertificates(m.Certificates())
	}
	return nil
}

// register makes sure the account exists (an existing one is found by its
// key).
func (m *Manager) register(ctx context.Context) error {
	acct := &xacme.Account{}
	if m.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + m.cfg.Email}
	}
	_, err := m.client.Register(ctx, acct, xacme.AcceptTOS)
	if err != nil && !errors.Is(err, xacme.ErrAccountAlreadyExists) {
		return fmt.Errorf("register the account at %s: %w", m.cfg.Directory, err)
	}
	return nil
}

// obtain runs an order for host through HTTP-01 and returns the
// certificate, with a new key.
func (m *Manager) obtain(ctx context.Context, host string) (*Cert, error) {
	order, err := m.client.AuthorizeOrder(ctx, xacme.DomainIDs(host))
	if err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	for _, u := range order.AuthzURLs {
		if err := m.authorize(ctx, u); err != nil {
			return nil, err
		}
	}
	if order, err = m.client.WaitOrder(ctx, order.URI); err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{host}}, key)
	if err != nil {
		return nil, err
	}
	der, _, err := m.client.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	var certPEM []byte
	for _, d := range der {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	c, err := parseCert(host, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	return c, nil
}

// authorize answers one authorization's HTTP-01 challenge.
func (m *Manager) authorize(ctx context.Context, u string) error {
	z, err := m.client.GetAuthorization(ctx, u)
	if err != nil {
		return fmt.Errorf("authorization: %w", err)
	}
	if z.Status == xacme.StatusValid {
		return nil
	}
	var chal *xacme.Challenge
	for _, c := range z.Challenges {
		if c.Type == "http-01" {
			chal = c
		}
	}
	if chal == nil {
		return fmt.Errorf("authorization of %s: the CA offers no http-01 challenge", z.Identifier.Value)
	}
	ka, err := m.client.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return err
	}
	m.setToken(ctx, chal.Token, ka)
	defer m.setToken(context.WithoutCancel(ctx), chal.Token, "")
	if _, err := m.client.Accept(ctx, chal); err != nil {
		return fmt.Errorf("accept the http-01 challenge: %w", err)
	}
	if _, err := m.client.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("http-01 validation of %s: %w", z.Identifier.Value, err)
	}
	return nil
}

// setToken adds (ka non-empty) or removes a pending token and publishes
// the whole set.
func (m *Manager) setToken(ctx context.Context, token, ka string) {
	m.mu.Lock()
	if m.tokens == nil {
		m.tokens = map[string]string{}
	}
	if ka == "" {
		delete(m.tokens, token)
	} else {
		m.tokens[token] = ka
	}
	set := maps.Clone(m.tokens)
	m.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := m.cfg.Publish(pctx, set); err != nil {
		m.log.Warn("challenge not confirmed on every balancer; validating anyway", "error", err)
	}
}

// Hosts returns the host names.
func (m *Manager) Hosts() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.hosts)
}
