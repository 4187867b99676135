package lb

import (
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/shoal-dev/shoal/internal/netpoll"
)

// HTTP/1.1 over TLS on the event loops (on unless
// Limits.DisableTLSFastPath or DisableFastPath is set). The
// handshake runs as on the general path, in the tlsListener's goroutine
// with crypto/tls (SNI, ALPN, session tickets, certificate rotation).
// A connection whose ALPN is http/1.1 or none then moves to a loop,
// which drives the same *tls.Conn without blocking: the tls.Conn sits on
// a tlsPipe, which on a loop reads the socket with a non-blocking read
// and answers "not yet" with a temporary net.Error. crypto/tls keeps a
// record it read in part and returns such an error to its caller without
// remembering it (crypto/tls/conn.go, readRecordOrCCS), so tls.Conn.Read
// decrypts what arrived and is called again at the next readiness
// report. tls.Conn.Write encrypts into the pipe's buffer, which the loop
// sends as the socket takes it. Everything else is the plain fast path:
// the same subset, and the same hand-over of anything outside it, here to
// the TLS listener's http.Server with the same tls.Conn, its pipe back on
// a blocking descriptor. WebSocket upgrades over TLS are handed over too.
// A connection the loop closes (Connection: close, idle or header
// timeout, drain, the client's own close_notify, which tls.Conn.Read
// reports as io.EOF) ends with a close_notify alert before the FIN.

// tlsWait is what a tlsPipe on a loop returns when the socket has nothing
// more for now: a net.Error that is Temporary, which crypto/tls passes
// up without making it the connection's error.
type tlsWait struct{}

func (tlsWait) Error() string   { return "tls: no more input yet" }
func (tlsWait) Timeout() bool   { return false }
func (tlsWait) Temporary() bool { return true }

var errTLSWait net.Error = tlsWait{}

// tlsPipe is the transport under a *tls.Conn that can move between a
// goroutine and a loop. While conn is set (the handshake, the general
// path) it is conn; on a loop (fd >= 0) it reads the descriptor without
// blocking and buffers what tls writes in out. Only one goroutine uses
// it at a time: the handshake's, then the loop's, then net/http's; each
// move is a hand-over through the loop's task queue or a channel.
type tlsPipe struct {
	conn         net.Conn
	fd           int
	out          []byte // ciphertext not sent yet (on a loop)
	laddr, raddr net.Addr
	// watch: the handshake may hand its records to a tlsRec
	// (tlsrecpipe.go); nil otherwise and once it ended.
	watch *recWatch
	// ahead: bytes read from the socket while the handshake was watched
	// and not handed to crypto/tls yet (readAhead), in aheadBuf.
	ahead    []byte
	aheadBuf *[]byte
}

func newTLSPipe(c net.Conn) *tlsPipe {
	return &tlsPipe{conn: c, fd: -1, laddr: c.LocalAddr(), raddr: c.RemoteAddr()}
}

func (p *tlsPipe) Read(b []byte) (int, error) {
	if len(p.ahead) > 0 || p.watch != nil && p.conn != nil {
		return p.readAhead(b)
	}
	if p.conn != nil {
		return p.conn.Read(b)
	}
	n, err := netpoll.Read(p.fd, b)
	switch {
	case n > 0:
		return n, nil
	case err == netpoll.ErrAgain:
		return 0, errTLSWait
	case err == nil:
		return 0, io.EOF
	default:
		return 0, err
	}
}

func (p *tlsPipe) Write(b []byte) (int, error) {
	if p.conn != nil {
		if len(p.out) > 0 {
			// Records a loop queued before the connection moved.
			if _, err := p.conn.Write(p.out); err != nil {
				return 0, err
			}
			p.out = nil
		}
		if p.watch != nil {
			p.watch.written = append(p.watch.written, b...)
		}
		return p.conn.Write(b)
	}
	p.out = append(p.out, b...)
	return len(b), nil
}

// Close closes the connection off a loop (a loop closes its descriptor
// itself).
func (p *tlsPipe) Close() error {
	if p.conn != nil {
		return p.conn.Close()
	}
	return nil
}

func (p *tlsPipe) LocalAddr() net.Addr  { return p.laddr }
func (p *tlsPipe) RemoteAddr() net.Addr { return p.raddr }

func (p *tlsPipe) SetDeadline(t time.Time) error {
	if p.conn != nil {
		return p.conn.SetDeadline(t)
	}
	return nil
}

func (p *tlsPipe) SetReadDeadline(t time.Time) error {
	if p.conn != nil {
		return p.conn.SetReadDeadline(t)
	}
	return nil
}

func (p *tlsPipe) SetWriteDeadline(t time.Time) error {
	if p.conn != nil {
		return p.conn.SetWriteDeadline(t)
	}
	return nil
}

// evTLS is the TLS layer of a client connection on a loop: crypto/tls's
// tls.Conn, or when the handshake handed its records over, our own record
// layer (rec, tlsrec.go; evtlsrec.go).
type evTLS struct {
	tc   *tls.Conn // nil when rec serves the connection
	rec  *tlsRec
	cs   *tls.ConnectionState // for the handler's requests
	pipe *tlsPipe
	l    *evLoop // whose free list lends the pipe's out buffer
	// full: the last read filled the caller's buffer, so tls may hold
	// decrypted or whole records that no readiness report will announce.
	full bool
	err  error // a read error that came after data, for the next read
	// h2: the ALPN is h2; the loop serves it with evH2Conn (evh2.go).
	h2 bool
	// in: the records read and not opened yet (in[ir:iw]), and plain,
	// opened application data not read yet (rec only).
	in     []byte
	ir, iw int
	plain  []byte
}

// maxTLSWrite bounds the plaintext encrypted at once, and so the pipe's
// buffer, when the socket takes less.
const maxTLSWrite = 64 << 10

// read decrypts into p what the socket brought, as much as p holds. It
// returns netpoll.ErrAgain when no whole record is there yet, and 0 and
// the error when the connection ended (io.EOF: a close_notify or the
// peer closing between records).
func (t *evTLS) read(p []byte) (int, error) {
	t.full = false
	if t.err != nil {
		return 0, t.err
	}
	if t.rec != nil {
		return t.readRec(p)
	}
	total := 0
	for total < len(p) {
		n, err := t.tc.Read(p[total:])
		total += n
		if err == nil {
			continue
		}
		if err != errTLSWait {
			if total > 0 {
				t.err = err
				return total, nil
			}
			return 0, err
		}
		if total == 0 {
			return 0, netpoll.ErrAgain
		}
		return total, nil
	}
	t.full = true
	return total, nil
}

// write encrypts a prefix of p and sends what the socket takes. It
// returns the plaintext bytes taken, or netpoll.ErrAgain when earlier
// records are still waiting for room (nothing of p is taken then). An
// empty p only sends what waits. last tells that p is the end of what
// the connection sends before it closes: on our record layer the
// close_notify (closeNotify's) then goes in the same write when all of p
// is taken.
func (t *evTLS) write(p []byte, last bool) (int, error) {
	if err := t.send(); err != nil {
		return -1, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxTLSWrite {
		p, last = p[:maxTLSWrite], false
	}
	if t.pipe.out == nil {
		t.pipe.out = t.l.getSmall()
	}
	n := len(p)
	if t.rec != nil {
		out, err := t.rec.sealData(t.pipe.out, p)
		if err != nil {
			t.pipe.out = out
			return -1, err
		}
		if last {
			out = t.rec.sealAlert(out, alertCloseNotify)
		}
		t.pipe.out = out
	} else {
		var err error
		if n, err = t.tc.Write(p); err != nil {
			return -1, err
		}
	}
	if err := t.send(); err != nil && err != netpoll.ErrAgain {
		return -1, err
	}
	return n, nil
}

// unsent reports records waiting for room in the socket.
func (t *evTLS) unsent() bool { return len(t.pipe.out) > 0 }

// send writes the waiting records; netpoll.ErrAgain when some remain.
func (t *evTLS) send() error {
	out := t.pipe.out
	for len(out) > 0 {
		n, err := netpoll.Write(t.pipe.fd, out)
		if n > 0 {
			out = out[n:]
			continue
		}
		// Keep the rest at the start of the buffer.
		t.pipe.out = t.pipe.out[:copy(t.pipe.out, out)]
		return err
	}
	// Everything went: the buffer goes back to the loop, so an idle
	// connection holds none (a burst's grown one goes to the collector).
	if cap(t.pipe.out) >= smallCap {
		t.l.putSmall(t.pipe.out)
	}
	t.pipe.out = nil
	return nil
}

// closeNotify queues a close_notify alert behind the records still
// waiting and sends what the socket takes now, as crypto/tls's Close
// does before the FIN, so a client can tell the end of the connection
// from a cut. A loop never waits to close: when the socket has no room
// left (a client that stopped reading), the alert goes unsent.
func (t *evTLS) closeNotify() {
	if t.rec != nil {
		t.alert(alertCloseNotify)
		t.releaseIn()
		return
	}
	if t.tc.CloseWrite() == nil {
		t.send()
	}
}

// handBack gives the connection to the general path: its pipe goes back
// to a blocking connection, nc (the same socket), and the plaintext
// already read, pre, is read again first.
func (t *evTLS) handBack(nc net.Conn, pre []byte, maxHead int) net.Conn {
	if t.rec != nil {
		rc := t.recConn(nc)
		g := newGuardConn(&prefixConn{Conn: rc, pre: pre}, maxHead)
		g.tlsConn = rc // Request.TLS, through the prefix
		return g
	}
	t.pipe.fd, t.pipe.conn = -1, nc
	g := newGuardConn(&prefixConn{Conn: t.tc, pre: pre}, maxHead)
	g.tlsConn = t.tc // Request.TLS, through the prefix
	return g
}
