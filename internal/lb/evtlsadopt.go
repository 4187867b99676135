package lb

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// newTLSFastServer makes the loops of a TLS listener: they accept
// nothing themselves; the listener's handshakes hand them connections
// (adoptTLS) and they hand back what they do not serve through give.
func newTLSFastServer(b *Balancer, name string, lim Limits) *fastServer {
	return &fastServer{b: b, name: name, lm: b.metrics.forListener(name), lim: lim, stopped: make(chan struct{}), ready: make(chan struct{})}
}

// adoptTLS moves a connection whose handshake tc finished (on pipe, over
// raw) to the lightest loop; rec, when not nil, is its record layer,
// which then serves it instead of tc. It reports false, leaving the connection as
// it was, when the loops are not serving (not started yet, or stopping)
// or the socket cannot be taken: the caller then serves it on the
// general path.
func (s *fastServer) adoptTLS(tc *tls.Conn, pipe *tlsPipe, raw net.Conn, rec *tlsRec) bool {
	s.mu.Lock()
	var to *evLoop
	if s.accepts {
		for _, l := range s.loops {
			if to == nil || l.nClients.Load() < to.nClients.Load() {
				to = l
			}
		}
	}
	s.mu.Unlock()
	if to == nil {
		return false
	}
	remote := raw.RemoteAddr().String()
	var client netip.Addr
	if ta, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
		client = ta.AddrPort().Addr().Unmap()
	}
	fd, release, err := detachFD(raw)
	if err != nil {
		s.b.log.Warn("TLS connection stays off the event loops", "listener", s.name, "error", err)
		return false
	}
	pipe.conn, pipe.fd = nil, fd
	t := &evTLS{tc: tc, pipe: pipe, l: to}
	if rec != nil {
		t.tc, t.rec, t.cs = nil, rec, rec.cs
		if len(pipe.ahead) > 0 {
			// The client's first records, read with its Finished.
			t.in = *recBufs.Get().(*[]byte)
			t.iw = pipe.takeAhead(t.in)
		}
	} else {
		cs := tc.ConnectionState()
		t.cs = &cs
	}
	t.h2 = t.cs.NegotiatedProtocol == "h2"
	if !t.h2 && rec == nil {
		t.cs = nil // the general path asks tc
	}
	s.conns.Add(1)
	to.nClients.Add(1)
	if !to.post(func() { to.adoptClient(fd, client, remote, release, t) }) {
		// The loop ended (the balancer is closing): so does the connection.
		to.nClients.Add(-1)
		s.conns.Add(-1)
		netpoll.Close(fd)
		if release != nil {
			release()
		}
	}
	return true
}

// detachFD takes the socket of c for a loop: a descriptor of its own
// (non-blocking, as Go's are) and, when c holds a MaxConns slot, the
// function that gives the slot back. c's own descriptor is closed.
func detachFD(c net.Conn) (int, func(), error) {
	var release func()
	if lc, ok := c.(*limitConn); ok {
		c = lc.Conn
		release = func() { lc.once.Do(lc.release) }
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return -1, nil, fmt.Errorf("not a TCP connection: %T", c)
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return -1, nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = netpoll.Dup(int(s)) }); err != nil {
		return -1, nil, err
	}
	if derr != nil {
		return -1, nil, derr
	}
	tcp.Close()
	return fd, release, nil
}
