package lb

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
)

// The request-smuggling guard.
//
// net/http parses HTTP/1 requests leniently in a few places that matter
// to a proxy: it merges duplicate identical Content-Length headers, it
// drops Content-Length when Transfer-Encoding is present but keeps the
// connection open (Go 1.26), answers unknown codings with 501, and folds
// obs-fold lines. By the time a handler runs, that evidence is gone. So
// every HTTP/1 connection is wrapped in a guardConn whose Read runs the
// raw bytes through an inspector before net/http sees them. The inspector
// follows message framing (header block, Content-Length or chunked body,
// trailers) so it knows where each header block starts, and it is at
// least as strict as net/http everywhere, so the two never disagree about
// where a request ends without one of them rejecting it.
//
// A violation stops the byte stream just before the offending byte; the
// next Read returns a *smuggleError, which net/http answers with "400 Bad
// Request" and Connection: close (or, if it happens while a previous
// request is still being served, by ending that request and closing).
// Content-Length together with Transfer-Encoding is not a violation: the
// request is read by Transfer-Encoding alone (as net/http does, RFC 9112
// 6.3) and the handler closes the connection after the response.

// smuggleError is a framing violation found by the guard.
type smuggleError struct{ reason string }

func (e *smuggleError) Error() string { return "bad request framing: " + e.reason }

// guardConn wraps a client connection carrying HTTP/1.
type guardConn struct {
	net.Conn
	ins inspector
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
	// tlsState is set when Conn is a *tls.Conn (HTTP/1.1 over TLS), so
	// that net/http fills Request.TLS through ConnectionState.
	tlsConn *tls.Conn
}

// newGuardConn guards c; maxHead is Limits.MaxHeaderBytes (heads larger
// than it are marked in oversize for the handler to answer 431).
func newGuardConn(c net.Conn, maxHead int) *guardConn {
	g := &guardConn{Conn: c}
	g.ins.reset()
	g.ins.maxHead = maxHead
	g.ins.onTaint = func(n int64) { g.tainted.CompareAndSwap(0, n) }
	g.ins.onOversize = func(n int64) { g.oversize.CompareAndSwap(0, n) }
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
	if n > 0 && !g.ins.passthrough {
		k, verr := g.ins.feed(p[:n])
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

// inspector states.
const (
	sMsgStart    = iota // before a request line; empty lines are skipped
	sMsgStartCR         // CR seen before a request line
	sReqLine            // in the request line
	sReqLineCR          // CR seen in the request line
	sLineStart          // at the start of a header (or trailer) line
	sLineStartCR        // CR at the start of a line: end of block
	sName               // in a field name
	sValue              // in a field value
	sValueCR            // CR seen in a field value
	sBody               // skipping a Content-Length body
	sChunkSize          // in a chunk-size
	sChunkExt           // in a chunk extension
	sChunkSizeCR        // CR after a chunk-size line
	sChunkData          // skipping chunk data
	sChunkDataCR        // expecting CR after chunk data
	sChunkDataLF        // expecting LF after chunk data
)

// inspector tracks HTTP/1 request framing over a byte stream. Its zero
// value is not ready; call reset.
type inspector struct {
	st          int
	passthrough bool // an Upgrade or CONNECT request: stop inspecting
	// stopAtEnd makes feed stop with errMsgEnd at the end of a chunked
	// body's trailers (the fast path follows response bodies this way).
	stopAtEnd bool
	onTaint   func(n int64)
	blocks    int64 // header blocks completed
	// maxHead, when > 0, is the largest head (request line through the
	// empty line, CRLFs included) that is not reported to onOversize
	// with the head's 1-based block number.
	maxHead    int
	head       int // bytes of the current head so far
	onOversize func(n int64)

	// request line
	method   [8]byte
	mlen     int
	inMethod bool
	last     [8]byte // the last 8 bytes of the request line, ring order
	llen     int

	// field line
	trailer  bool
	name     [17]byte
	nlen     int
	nameLong bool
	val      [64]byte
	vlen     int
	valLong  bool
	valOWS   int // trailing OWS bytes in val

	// header block
	nCL, nTE  int
	upgrade   bool
	http11    bool
	clen      uint64
	remain    uint64
	chunkSize uint64
	digits    int
}

func (s *inspector) reset() { s.st = sMsgStart }

func violation(reason string) error { return &smuggleError{reason: reason} }

// errMsgEnd is feed's signal, with stopAtEnd, that the byte at the
// returned index ended the chunked message.
var errMsgEnd = errors.New("end of message")

// startChunked readies s to follow a chunked body up to its end.
func (s *inspector) startChunked() {
	*s = inspector{st: sChunkSize, stopAtEnd: true}
}

// feed inspects p and returns the number of bytes before the first
// violation and the violation, or len(p) and nil.
func (s *inspector) feed(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		if s.passthrough {
			return len(p), nil
		}
		c := p[i]
		if s.st >= sReqLine && s.st <= sValueCR && !s.trailer {
			s.head++
		}
		switch s.st {
		case sMsgStart:
			switch c {
			case '\r':
				s.st = sMsgStartCR
			case '\n':
			default:
				s.startRequest()
				if err := s.reqByte(c); err != nil {
					return i, err
				}
			}
		case sMsgStartCR:
			if c != '\n' {
				return i, violation("bare CR")
			}
			s.st = sMsgStart
		case sReqLine:
			if c == '\r' {
				s.st = sReqLineCR
				continue
			}
			if c == '\n' {
				if err := s.endReqLine(); err != nil {
					return i, err
				}
				continue
			}
			if err := s.reqByte(c); err != nil {
				return i, err
			}
		case sReqLineCR:
			if c != '\n' {
				return i, violation("bare CR in request line")
			}
			if err := s.endReqLine(); err != nil {
				return i, err
			}
		case sLineStart:
			switch {
			case c == '\r':
				s.st = sLineStartCR
			case c == '\n':
				if err := s.endBlock(); err != nil {
					return i, err
				}
			case c == ' ' || c == '\t':
				return i, violation("obs-fold or leading whitespace in header line")
			case isTokenByte(c):
				s.nlen, s.nameLong, s.vlen, s.valLong, s.valOWS = 0, false, 0, false, 0
				s.nameByte(c)
				s.st = sName
			default:
				return i, violation("invalid byte in header name")
			}
		case sLineStartCR:
			if c != '\n' {
				return i, violation("bare CR")
			}
			if err := s.endBlock(); err != nil {
				return i, err
			}
		case sName:
			switch {
			case c == ':':
				s.st = sValue
			case isTokenByte(c):
				s.nameByte(c)
			default:
				return i, violation("invalid byte in header name")
			}
		case sValue:
			switch {
			case c == '\r':
				s.st = sValueCR
			case c == '\n':
				if err := s.endField(); err != nil {
					return i, err
				}
			case c < 0x20 && c != '\t' || c == 0x7f:
				return i, violation("control byte in header value")
			default:
				s.valByte(c)
			}
		case sValueCR:
			if c != '\n' {
				return i, violation("bare CR in header value")
			}
			if err := s.endField(); err != nil {
				return i, err
			}
		case sBody:
			i += s.skip(p[i:]) - 1
			if s.remain == 0 {
				s.st = sMsgStart
			}
		case sChunkSize:
			if d, ok := hexVal(c); ok {
				if s.digits == 16 {
					return i, violation("chunk size too large")
				}
				s.chunkSize = s.chunkSize<<4 | uint64(d)
				s.digits++
				continue
			}
			if s.digits == 0 {
				return i, violation("bad chunk size")
			}
			switch c {
			case ';':
				s.st = sChunkExt
			case '\r':
				s.st = sChunkSizeCR
			default:
				return i, violation("bad chunk size line")
			}
		case sChunkExt:
			switch {
			case c == '\r':
				s.st = sChunkSizeCR
			case c < 0x20 && c != '\t' || c == 0x7f:
				return i, violation("control byte in chunk extension")
			}
		case sChunkSizeCR:
			if c != '\n' {
				return i, violation("bare CR in chunk size line")
			}
			if s.chunkSize == 0 {
				s.trailer = true
				s.st = sLineStart
			} else {
				s.remain = s.chunkSize
				s.st = sChunkData
			}
		case sChunkData:
			i += s.skip(p[i:]) - 1
			if s.remain == 0 {
				s.st = sChunkDataCR
			}
		case sChunkDataCR:
			if c != '\r' {
				return i, violation("chunk data longer than its size")
			}
			s.st = sChunkDataLF
		case sChunkDataLF:
			if c != '\n' {
				return i, violation("bare CR after chunk data")
			}
			s.chunkSize, s.digits = 0, 0
			s.st = sChunkSize
		}
	}
	return len(p), nil
}

// skip consumes up to s.remain bytes of p and returns how many (>= 1).
func (s *inspector) skip(p []byte) int {
	n := uint64(len(p))
	if n > s.remain {
		n = s.remain
	}
	s.remain -= n
	return int(n)
}

func (s *inspector) startRequest() {
	s.st = sReqLine
	s.head = 1 // the byte that started it
	s.mlen, s.inMethod, s.llen = 0, true, 0
	s.nCL, s.nTE, s.upgrade, s.http11, s.clen, s.trailer = 0, 0, false, false, 0, false
}

func (s *inspector) reqByte(c byte) error {
	if c < 0x20 || c == 0x7f {
		return violation("control byte in request line")
	}
	if s.inMethod {
		if c == ' ' {
			s.inMethod = false
		} else if s.mlen < len(s.method) {
			s.method[s.mlen] = c
			s.mlen++
		}
	}
	s.last[s.llen%len(s.last)] = c
	s.llen++
	return nil
}

func (s *inspector) endReqLine() error {
	// The version is the last 8 bytes: "HTTP/1.1".
	const v11 = "HTTP/1.1"
	if s.llen >= 8 {
		s.http11 = true
		for j := 0; j < 8; j++ {
			if s.last[(s.llen+j)%8] != v11[j] {
				s.http11 = false
				break
			}
		}
	}
	s.st = sLineStart
	return nil
}

func (s *inspector) nameByte(c byte) {
	if s.nlen == len(s.name) {
		s.nameLong = true
		return
	}
	if 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	s.name[s.nlen] = c
	s.nlen++
}

func (s *inspector) valByte(c byte) {
	isOWS := c == ' ' || c == '\t'
	if s.vlen == 0 && isOWS {
		return // leading OWS
	}
	if s.vlen == len(s.val) {
		s.valLong = true
		return
	}
	s.val[s.vlen] = c
	s.vlen++
	if isOWS {
		s.valOWS++
	} else {
		s.valOWS = 0
	}
}

// endField checks a completed field line.
func (s *inspector) endField() error {
	s.st = sLineStart
	if s.nameLong {
		return nil
	}
	name := string(s.name[:s.nlen]) // does not allocate in comparisons below
	val := s.val[:s.vlen-s.valOWS]
	switch name {
	case "content-length":
		if s.trailer {
			return violation("Content-Length in trailer")
		}
		s.nCL++
		if s.nCL > 1 {
			return violation("duplicate Content-Length")
		}
		if s.valLong || len(val) == 0 || len(val) > 18 {
			return violation("bad Content-Length")
		}
		var n uint64
		for _, c := range val {
			if c < '0' || c > '9' {
				return violation("bad Content-Length")
			}
			n = n*10 + uint64(c-'0')
		}
		s.clen = n
	case "transfer-encoding":
		if s.trailer {
			return violation("Transfer-Encoding in trailer")
		}
		s.nTE++
		if s.nTE > 1 {
			return violation("repeated Transfer-Encoding")
		}
		if s.valLong || !asciiEqualFold(val, "chunked") {
			return violation("unsupported transfer coding")
		}
	case "upgrade":
		if !s.trailer {
			s.upgrade = true
		}
	case "host":
		if s.trailer {
			return violation("Host in trailer")
		}
	}
	return nil
}

// endBlock runs at the empty line that ends a header block or trailers.
func (s *inspector) endBlock() error {
	if s.trailer {
		s.trailer = false
		s.st = sMsgStart
		if s.stopAtEnd {
			return errMsgEnd
		}
		return nil
	}
	if s.nTE > 0 && !s.http11 {
		return violation("Transfer-Encoding in a request that is not HTTP/1.1")
	}
	s.blocks++
	if s.maxHead > 0 && s.head > s.maxHead && s.onOversize != nil {
		s.onOversize(s.blocks)
	}
	if s.nTE > 0 && s.nCL > 0 && s.onTaint != nil {
		s.onTaint(s.blocks)
	}
	switch {
	case s.upgrade || string(s.method[:s.mlen]) == "CONNECT":
		s.passthrough = true
	case s.nTE > 0:
		s.chunkSize, s.digits = 0, 0
		s.st = sChunkSize
	case s.clen > 0:
		s.remain = s.clen
		s.st = sBody
	default:
		s.st = sMsgStart
	}
	return nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
