package lb

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// TargetTLS is how a pool reaches its targets over TLS (HTTPS targets:
// an ELB target group with protocol HTTPS, HAProxy's "server ... ssl").
// The target's certificate is verified against the system roots, or
// against CAFile's alone when it is set, for ServerName (or, when it is
// empty, the host of the target's address: a name, or an IP address the
// certificate must list). Files are read when the pool is built and at
// every Reload, so a changed CA, certificate or key file applies on the
// next Reload.
type TargetTLS struct {
	// CAFile is a PEM file of the CA certificates that verify the
	// targets; empty means the system roots.
	CAFile string
	// ServerName is sent as SNI and verified in the target's
	// certificate; empty means the host of each target's address.
	ServerName string
	// CertFile and KeyFile are a client certificate (PEM chain) and its
	// key, presented to targets that ask for one (mutual TLS); both or
	// neither.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any certificate from the targets: the
	// connection is encrypted but the target is not authenticated, so
	// anyone on the path can read and change the traffic. For tests and
	// migrations only; it cannot be combined with CAFile.
	InsecureSkipVerify bool
}

// TLSFileError is a TargetTLS file that cannot be used; Field names the
// setting ("ca_file", "cert_file" or "key_file", as in lb.yaml).
type TLSFileError struct {
	Field string
	Err   error
}

func (e *TLSFileError) Error() string { return e.Err.Error() }
func (e *TLSFileError) Unwrap() error { return e.Err }

// Check reads t's files and reports the first that cannot be used, as a
// *TLSFileError, or a setting that contradicts another.
func (t *TargetTLS) Check() error {
	_, err := loadTargetTLS(t, ProtocolHTTP1)
	return err
}

// targetTLS is a pool's loaded TargetTLS: the client config every dial
// clones, the digest of the settings and file contents it was built from
// (a Reload keeps the pool's transport, with its connections and
// sessions, while the digest is the same), and the pool's TLS session
// cache, so that new connections to a target resume its sessions
// instead of a full handshake.
type targetTLS struct {
	conf     *tls.Config
	sum      [sha256.Size]byte
	sessions tls.ClientSessionCache
	// fails counts the failures of the pool's connections, the loops'
	// (evtargettls.go) as its transport's; set with the transport (a
	// reload may set it again while loops read it).
	fails atomic.Pointer[tlsFailures]
}

// targetSessions is the number of TLS sessions a pool keeps (one per
// target is used; the rest is room for rotation).
const targetSessions = 1024

// loadTargetTLS reads t's files and builds the client config for a pool
// that speaks proto: ALPN "h2" for ProtocolH2, "http/1.1" otherwise.
func loadTargetTLS(t *TargetTLS, proto Protocol) (*targetTLS, error) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, &TLSFileError{Field: "cert_file", Err: errors.New("cert_file and key_file go together: set both or neither")}
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		return nil, &TLSFileError{Field: "ca_file", Err: errors.New("ca_file cannot be combined with insecure_skip_verify (which verifies nothing)")}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q %v %v\n", t.CAFile, t.ServerName, t.CertFile, t.KeyFile, t.InsecureSkipVerify, proto)
	conf := &tls.Config{
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
	}
	if proto == ProtocolH2 {
		conf.NextProtos = []string{"h2"}
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &TLSFileError{Field: "ca_file", Err: fmt.Errorf("read CA file: %w", err)}
		}
		h.Write(pem)
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, &TLSFileError{Field: "ca_file", Err: fmt.Errorf("%s holds no PEM certificate", t.CAFile)}
		}
		conf.RootCAs = roots
	}
	if t.CertFile != "" {
		cert, err := os.ReadFile(t.CertFile)
		if err != nil {
			return nil, &TLSFileError{Field: "cert_file", Err: fmt.Errorf("read client certificate: %w", err)}
		}
		key, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, &TLSFileError{Field: "key_file", Err: fmt.Errorf("read client key: %w", err)}
		}
		h.Write(cert)
		h.Write(key)
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, &TLSFileError{Field: "cert_file", Err: fmt.Errorf("client certificate %s with key %s: %w", t.CertFile, t.KeyFile, err)}
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	tt := &targetTLS{conf: conf, sessions: tls.NewLRUClientSessionCache(targetSessions)}
	h.Sum(tt.sum[:0])
	return tt, nil
}

// forTarget returns the config of one connection to addr: the server
// name defaults to addr's host, and sessions are kept per target (Go
// keys them by server name, which one ServerName shares across targets
// that each issue their own tickets).
func (tt *targetTLS) forTarget(addr string) *tls.Config {
	c := tt.conf.Clone()
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		c.ServerName = host
	}
	c.ClientSessionCache = targetSessionCache{c: tt.sessions, addr: addr}
	return c
}

// targetSessionCache is the pool's session cache seen by connections to
// one target.
type targetSessionCache struct {
	c    tls.ClientSessionCache
	addr string
}

func (s targetSessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	return s.c.Get(s.addr + " " + key)
}

func (s targetSessionCache) Put(key string, cs *tls.ClientSessionState) {
	s.c.Put(s.addr+" "+key, cs)
}

// errNoH2 is a target of an h2 pool that did not agree to HTTP/2 in the
// TLS handshake (ALPN).
var errNoH2 = errors.New("target did not agree to HTTP/2 in the TLS handshake (ALPN); serve h2 there or use protocol http1")

// noALPN reports whether err is the no_application_protocol alert
// (RFC 7301 3.2) from a target that serves ALPN but none of the
// protocols offered. crypto/tls exports no type for alerts received
// over TCP (a *net.OpError "remote error" around an unexported alert),
// so its text is compared.
func noALPN(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil && oe.Err.Error() == "tls: no application protocol"
}

// tlsFailures counts and logs a pool's failed TLS connections to its
// targets: at most one log line a second, with the count since the last.
type tlsFailures struct {
	log    *slog.Logger
	count  func(reason string)
	last   atomic.Int64 // unix nanos of the last line
	missed atomic.Int64
}

func (f *tlsFailures) report(addr, reason string, err error) {
	f.count(reason)
	now := time.Now().UnixNano()
	last := f.last.Load()
	if now-last < int64(time.Second) || !f.last.CompareAndSwap(last, now) {
		f.missed.Add(1)
		return
	}
	f.log.Warn("TLS connection to target failed", "target", addr, "reason", reason, "error", err, "unlogged", f.missed.Swap(0))
}

// dialTLSTarget is the dial of a TLS pool's transport: TCP as dialTarget,
// then the handshake, bounded by the connect timeout too, and for an h2
// pool the refusal of a target that did not agree to HTTP/2. Failures
// are dialErrors (the request never reached the target).
func dialTLSTarget(pc PoolConfig, tt *targetTLS, fails *tlsFailures) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := dialTarget(pc)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc, err := handshake(ctx, raw, tt.forTarget(addr), pc.ConnectTimeout)
		if err != nil {
			reason := "handshake"
			if noALPN(err) {
				reason = "alpn" // the target speaks none of the protocols offered
			}
			fails.report(addr, reason, err)
			return nil, &dialError{err}
		}
		if pc.Protocol == ProtocolH2 {
			if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
				tc.Close()
				err := fmt.Errorf("target %s (ALPN %q): %w", addr, p, errNoH2)
				fails.report(addr, "alpn", err)
				return nil, &dialError{err}
			}
		}
		return tc, nil
	}
}

// newTLSTransport is newTransport's counterpart for a pool with TLS:
// HTTP/1.1 or, for ProtocolH2, HTTP/2 over the connections dialTLSTarget
// makes, with the same timeouts and idle limit as the others. Requests
// to it carry the https scheme (poolEntry.scheme).
func newTLSTransport(pc PoolConfig, lim Limits, tt *targetTLS, fails *tlsFailures) *http.Transport {
	var protos http.Protocols
	tr := &http.Transport{
		DialTLSContext:         dialTLSTarget(pc, tt, fails),
		Protocols:              &protos,
		MaxIdleConnsPerHost:    lim.MaxIdlePerHost,
		IdleConnTimeout:        lim.UpstreamIdle,
		ResponseHeaderTimeout:  max(pc.TryTimeout, 0),
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
	}
	if pc.Protocol == ProtocolH2 {
		protos.SetHTTP2(true)
		return tr
	}
	protos.SetHTTP1(true)
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.WriteBufferSize, tr.ReadBufferSize = 32<<10, 32<<10
	return tr
}

// dialTunnel connects to a target of pe for a WebSocket tunnel: TCP
// with d, then for a TLS pool the handshake (bounded by d's timeout)
// with ALPN http/1.1, an h2 pool's included: the upgrade is HTTP/1.1's.
func (pe *poolEntry) dialTunnel(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || pe.tls == nil {
		return conn, err
	}
	conf := pe.tls.forTarget(addr)
	conf.NextProtos = []string{"http/1.1"}
	return handshake(ctx, conn, conf, d.Timeout)
}

// handshake makes raw a TLS client connection with conf within timeout
// (none when zero or less); raw is closed on failure.
func handshake(ctx context.Context, raw net.Conn, conf *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with target %s: %w", raw.RemoteAddr(), err)
	}
	return tc, nil
}

// schemeTransport sends every request over tr with the https scheme: the
// health probes' transport for a TLS pool (health builds http:// URLs).
type schemeTransport struct{ tr http.RoundTripper }

func (s schemeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := *r
	u := *r.URL
	u.Scheme = "https"
	r2.URL = &u
	return s.tr.RoundTrip(&r2)
}
