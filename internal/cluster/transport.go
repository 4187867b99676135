package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
)

// tlsStream is raft's StreamLayer over mutual TLS: both ends present a
// certificate of the fleet CA with role server, and refuse any other (an
// agent's or a balancer node's certificate of the same CA included). The
// roles are checked in the handshake (VerifyPeerCertificate), so Accept
// never blocks on a slow or hostile client; a refused handshake fails
// the connection's first read, and raft drops it.
//
// Close closes the listener and every accepted connection: raft's
// NetworkTransport leaves those to the peer, and a node shut down while
// its peers live on would keep a reader goroutine per peer.
type tlsStream struct {
	ln        net.Listener // a tls.Listener over the bound TCP listener
	advertise net.Addr
	client    *tls.Config

	mu       sync.Mutex
	closed   bool
	accepted map[net.Conn]struct{}
}

func newTLSStream(ln net.Listener, advertise string, serverTLS, clientTLS *tls.Config) (*tlsStream, error) {
	if serverTLS == nil || clientTLS == nil {
		return nil, errors.New("raft transport: ServerTLS and ClientTLS are required")
	}
	addr, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("raft transport: advertise address %q: %w", advertise, err)
	}
	if addr.IP == nil || addr.IP.IsUnspecified() || addr.Port == 0 {
		return nil, fmt.Errorf("raft transport: advertise address %q: want the host:port other servers dial", advertise)
	}
	sc := serverTLS.Clone()
	sc.ClientAuth = tls.RequireAndVerifyClientCert
	sc.VerifyPeerCertificate = requireServerRole
	cc := clientTLS.Clone()
	cc.VerifyPeerCertificate = requireServerRole
	return &tlsStream{ln: tls.NewListener(ln, sc), advertise: addr, client: cc, accepted: map[net.Conn]struct{}{}}, nil
}

// requireServerRole accepts a verified chain whose leaf has role server.
func requireServerRole(_ [][]byte, chains [][]*x509.Certificate) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("raft transport: no verified certificate")
	}
	id, err := pki.IdentityOf(chains[0][0])
	if err != nil {
		return fmt.Errorf("raft transport: %w", err)
	}
	if id.Role != api.RoleServer {
		return fmt.Errorf("raft transport: %q has role %s, want %s", id.Name, id.Role, api.RoleServer)
	}
	return nil
}

// Accept waits for the next connection of a peer.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, s: s}
	s.accepted[tc] = struct{}{}
	return tc, nil
}

// Close closes the listener and every accepted connection still open.
func (s *tlsStream) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	conns := s.accepted
	s.accepted = map[net.Conn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		c.(*trackedConn).Conn.Close()
	}
	return err
}

type trackedConn struct {
	net.Conn
	s *tlsStream
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.accepted, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// Addr is the address other servers dial (raft's ServerAddress of this
// node), not the bound one: a listener on 0.0.0.0 advertises a host.
func (s *tlsStream) Addr() net.Addr { return s.advertise }

// Dial connects to a peer's raft listener, checking its certificate for
// the address's host.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft transport: peer address %q: %w", address, err)
	}
	cfg := s.client.Clone()
	cfg.ServerName = host
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), cfg)
	if err != nil {
		return nil, fmt.Errorf("raft transport: dial %s: %w", address, err)
	}
	return conn, nil
}
