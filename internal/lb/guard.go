package lb

import (
	"crypto/tls"
	"net"
	"sync/atomic"

	"github.com/shoal-dev/shoal/internal/h1"
)

// The request-smuggling guard.
//
// net/http parses HTTP/1 requests leniently in a few places that matter
// to a proxy: it merges duplicate identical Content-Length headers, it
// drops Content-Length when Transfer-Encoding is present but keeps the
// connection open (Go 1.26), answers unknown codings with 501, and folds
// obs-fold lines. By the time a handler runs, that evidence is gone. So
// every HTTP/1 connection is wrapped in a guardConn whose Read runs the
// raw bytes through an h1.Inspector before net/http sees them. The inspector
// follows message framing (header block, Content-Length or chunked body,
// trailers) so it knows where each header block starts, and it is at
// least as strict as net/http everywhere, so the two never disagree about
// where a request ends without one of them rejecting it.
//
// A violation stops the byte stream just before the offending byte; the
// next Read returns a *h1.FramingError, which net/http answers with "400 Bad
// Request" and Connection: close (or, if it happens while a previous
// request is still being served, by ending that request and closing).
// Content-Length together with Transfer-Encoding is not a violation: the
// request is read by Transfer-Encoding alone (as net/http does, RFC 9112
// 6.3) and the handler closes the connection after the response.

// guardConn wraps a client connection carrying HTTP/1.
type guardConn struct {
	net.Conn
	ins h1.Inspector
	err error // sticky violation, returned by every later Read
	// tainted is the 1-based number of the first request that carried both
	// Content-Length and Transfer-Encoding; 0 when none did. Read by the
	// handler while the background read may run, hence atomic.
	tainted atomic.Int64
	// oversize is the 1-based number of the first request whose head was
	// larger than the listener's MaxHeaderBytes; 0 when none was. Atomic
	// like tainted.
	oversize atomic.Int64
	// served counts requests handed to the handler; only the connection's
	// serving goroutine touches it.
	served int64
	// tlsConn is set when Conn is a *tls.Conn or our record layer's
	// recConn (HTTP/1.1 over TLS), so that net/http fills Request.TLS
	// through ConnectionState.
	tlsConn tlsStater
}

// tlsStater is a TLS connection's state for Request.TLS.
type tlsStater interface{ ConnectionState() tls.ConnectionState }

// newGuardConn guards c; maxHead is Limits.MaxHeaderBytes (heads larger
// than it are marked in oversize for the handler to answer 431).
func newGuardConn(c net.Conn, maxHead int) *guardConn {
	g := &guardConn{Conn: c}
	g.ins.MaxHead = maxHead
	g.ins.OnTaint = func(n int64) { g.tainted.CompareAndSwap(0, n) }
	g.ins.OnOversize = func(n int64) { g.oversize.CompareAndSwap(0, n) }
	if tc, ok := c.(*tls.Conn); ok {
		g.tlsConn = tc
	}
	return g
}

// ConnectionState lets net/http set Request.TLS for HTTP/1.1 over TLS.
func (g *guardConn) ConnectionState() tls.ConnectionState {
	if g.tlsConn == nil {
		return tls.ConnectionState{}
	}
	return g.tlsConn.ConnectionState()
}

func (g *guardConn) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.Conn.Read(p)
	if n > 0 && !g.ins.Passthrough() {
		k, verr := g.ins.Feed(p[:n])
		if verr != nil {
			g.err = verr
			if k == 0 {
				return 0, verr
			}
			return k, nil
		}
	}
	return n, err
}
