package lb

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// certPollInterval is how often the certificate files of TLS listeners
// are read again to pick up a renewal without a reload.
const certPollInterval = time.Second

// certWatcher holds the certificates of one TLS listener and serves them
// through tls.Config.GetCertificate. check reads the files again and
// swaps in a pair only once it loads whole and its key matches its
// certificate: a handshake sees either the old set or the new one, never
// a half-written or mismatched pair (that is logged and the old one kept).
type certWatcher struct {
	listener string
	log      *slog.Logger
	// managed looks up a certificate set by Balancer.SetCertificates
	// for an SNI name; it holds nil when the listener is not Managed. A
	// reload may turn it on or off (replace).
	managed atomic.Pointer[managedLookup]
	cur     atomic.Pointer[[]*tls.Certificate] // served, in config order

	mu    sync.Mutex // guards pairs and gen; never held during I/O
	pairs []certPair
	gen   int // counts replace calls
}

// certPair is one configured pair and the file contents last seen.
type certPair struct {
	files      Certificate
	cert       *tls.Certificate // served
	certPEM    []byte           // contents last read: of cert, or of a rejected change
	keyPEM     []byte
	unreadable bool // the last read failed (logged once)
}

// newCertWatcher loads every pair of certs; any failure is an error.
// managed is Balancer.managedFor for a Managed listener, else nil.
func newCertWatcher(listener string, certs []Certificate, managed func(string) *tls.Certificate, log *slog.Logger) (*certWatcher, error) {
	w := &certWatcher{listener: listener, log: log}
	if managed != nil {
		w.managed.Store(&managedLookup{managed})
	}
	for _, c := range certs {
		cp, kp, err := readPair(c)
		if err != nil {
			return nil, err
		}
		kpair, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s: %w", c.CertFile, err)
		}
		w.pairs = append(w.pairs, certPair{files: c, cert: &kpair, certPEM: cp, keyPEM: kp})
	}
	w.publishLocked()
	return w, nil
}

func readPair(c Certificate) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(c.CertFile); err != nil {
		return nil, nil, fmt.Errorf("load certificate %s: %w", c.CertFile, err)
	}
	if keyPEM, err = os.ReadFile(c.KeyFile); err != nil {
		return nil, nil, fmt.Errorf("load certificate %s: %w", c.CertFile, err)
	}
	return certPEM, keyPEM, nil
}

// publishLocked makes the pairs' certificates the served set.
func (w *certWatcher) publishLocked() {
	set := make([]*tls.Certificate, len(w.pairs))
	for i, p := range w.pairs {
		set[i] = p.cert
	}
	w.cur.Store(&set)
}

// tlsConfig is the server TLS config of the listener. Several
// certificates are chosen by SNI as crypto/tls does with
// Config.Certificates (the first that suits the client, else the first);
// HTTP/2 and HTTP/1.1 are offered through ALPN.
func (w *certWatcher) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: w.get,
	}
}

func (w *certWatcher) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m := w.managed.Load(); m != nil {
		if c := m.get(hello.ServerName); c != nil {
			return c, nil
		}
	}
	set := *w.cur.Load()
	if len(set) == 0 {
		return nil, fmt.Errorf("listener %s: no certificate for %q", w.listener, hello.ServerName)
	}
	if len(set) > 1 {
		for _, c := range set {
			if hello.SupportsCertificate(c) == nil {
				return c, nil
			}
		}
	}
	return set[0], nil
}

// replace takes the pairs of next (loaded by a reload) as its own.
func (w *certWatcher) replace(next *certWatcher) {
	next.mu.Lock()
	pairs := next.pairs
	next.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pairs = pairs
	w.gen++
	w.publishLocked()
	w.managed.Store(next.managed.Load())
}

// managedLookup wraps Balancer.managedFor for an atomic pointer.
type managedLookup struct {
	get func(name string) *tls.Certificate
}

// check reads every pair's files and swaps in those that changed and
// load; a change that does not load is logged once and ignored until the
// files change again. The files are read and parsed without w.mu held;
// a reload that replaced the pairs meanwhile wins.
func (w *certWatcher) check() {
	w.mu.Lock()
	pairs, gen := append([]certPair(nil), w.pairs...), w.gen
	w.mu.Unlock()
	changed := false
	for i := range pairs {
		p := &pairs[i]
		cp, kp, err := readPair(p.files)
		if err != nil {
			if !p.unreadable {
				w.log.Warn("certificate change rejected; the previous one is kept", "listener", w.listener, "file", p.files.CertFile, "error", err)
			}
			p.unreadable = true
			continue
		}
		p.unreadable = false
		if bytes.Equal(cp, p.certPEM) && bytes.Equal(kp, p.keyPEM) {
			continue
		}
		p.certPEM, p.keyPEM = cp, kp
		kpair, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			w.log.Warn("certificate change rejected; the previous one is kept", "listener", w.listener, "file", p.files.CertFile, "error", err)
			continue
		}
		p.cert, changed = &kpair, true
		w.log.Info("certificate reloaded", "listener", w.listener, "file", p.files.CertFile, "not_after", kpair.Leaf.NotAfter)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != gen {
		return
	}
	w.pairs = pairs
	if changed {
		w.publishLocked()
	}
}

// watchCerts re-reads the certificate files of every TLS listener each
// certPollInterval until ctx ends, so that a renewed certificate is used
// without a reload. One goroutine, owned by Run.
func (b *Balancer) watchCerts(ctx context.Context) {
	tick := time.NewTicker(certPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		b.mu.Lock()
		var ws []*certWatcher
		for _, l := range b.listeners {
			if l.certs != nil {
				ws = append(ws, l.certs)
			}
		}
		b.mu.Unlock()
		for _, w := range ws {
			w.check()
		}
	}
}
