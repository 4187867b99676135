package h1

import "errors"

// The framing inspector.
//
// net/http parses HTTP/1 requests leniently in a few places that matter
// to a proxy: it merges duplicate identical Content-Length headers, it
// drops Content-Length when Transfer-Encoding is present but keeps the
// connection open (Go 1.26), answers unknown codings with 501, and folds
// obs-fold lines. By the time a handler runs, that evidence is gone. So
// the balancer runs the raw bytes of every HTTP/1 connection through an
// Inspector before net/http sees them. The inspector follows message
// framing (header block, Content-Length or chunked body, trailers) so it
// knows where each header block starts, and it is at least as strict as
// net/http everywhere, so the two never disagree about where a request
// ends without one of them rejecting it. Content-Length together with
// Transfer-Encoding is not a violation: the request is read by
// Transfer-Encoding alone (as net/http does, RFC 9112 6.3) and OnTaint
// tells the caller to close the connection after the response.

// FramingError is a framing violation found by an Inspector (a possible
// request-smuggling attempt); the request is answered 400 and the
// connection closed.
type FramingError struct{ Reason string }

func (e *FramingError) Error() string { return "bad request framing: " + e.Reason }

// inspector states.
const (
	sMsgStart    = iota // before a request line; empty lines are skipped
	sMsgStartCR         // CR seen before a request line
	sReqLine            // in the request line
	sReqLineCR          // CR seen in the request line
	sField              // in a header (or trailer) block: line.go's scanner, at s.line
	sBody               // skipping a Content-Length body
	sChunkSize          // in a chunk-size
	sChunkExt           // in a chunk extension
	sChunkSizeCR        // CR after a chunk-size line
	sChunkData          // skipping chunk data
	sChunkDataCR        // expecting CR after chunk data
	sChunkDataLF        // expecting LF after chunk data
)

// Inspector tracks HTTP/1 request framing over a byte stream. Its zero
// value is ready (at the start of a message); Reset returns it there. An
// Inspector is owned by one goroutine.
type Inspector struct {
	st          int
	line        lineState // in sField
	passthrough bool      // an Upgrade or CONNECT request: stop inspecting
	// stopAtEnd makes feed stop with ErrMsgEnd at the end of a chunked
	// body's trailers (the fast path follows response bodies this way).
	stopAtEnd bool
	// OnTaint, when set, is called with the 1-based number of a header
	// block that has both Content-Length and Transfer-Encoding.
	OnTaint func(n int64)
	blocks  int64 // header blocks completed
	// MaxHead, when > 0, is the largest head (request line through the
	// empty line, CRLFs included) that is not reported to OnOversize
	// with the head's 1-based block number.
	MaxHead    int
	head       int // bytes of the current head so far
	OnOversize func(n int64)

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

// Reset readies s for the start of a message.
func (s *Inspector) Reset() { s.st = sMsgStart }

// Passthrough reports whether s stopped inspecting: the last header
// block was an Upgrade or CONNECT request, so the bytes after it are a
// tunnel's.
func (s *Inspector) Passthrough() bool { return s.passthrough }

func violation(reason string) error { return &FramingError{Reason: reason} }

// ErrMsgEnd is Feed's signal, after StartChunked, that the byte at the
// returned index ended the chunked message.
var ErrMsgEnd = errors.New("end of message")

// StartChunked readies s to follow a chunked body (a response's, on the
// fast path) up to the end of its trailers, where Feed returns ErrMsgEnd.
func (s *Inspector) StartChunked() {
	*s = Inspector{st: sChunkSize, stopAtEnd: true}
}

// Feed inspects p and returns the number of bytes before the first
// violation and the violation (a *FramingError), or len(p) and nil.
func (s *Inspector) Feed(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		if s.passthrough {
			return len(p), nil
		}
		c := p[i]
		if s.st >= sReqLine && s.st <= sField && !s.trailer {
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
		case sField:
			k, err := s.fields(p[i:])
			i += k
			if err != nil {
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
			case ctlByte(c):
				return i, violation("control byte in chunk extension")
			}
		case sChunkSizeCR:
			if c != '\n' {
				return i, violation("bare CR in chunk size line")
			}
			if s.chunkSize == 0 {
				s.trailer = true
				s.st, s.line = sField, lineStart
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

// fields runs the field-line scanner of line.go over q, a header or
// trailer block's bytes from q[0] on, until the block ends or q does. It
// returns the index in q of the last byte it took (the block's final LF,
// a violation, or len(q)-1) and the violation or endBlock's verdict. The
// caller counted q[0] into s.head; fields counts the rest it takes.
func (s *Inspector) fields(q []byte) (int, error) {
	line := s.line
	for k, c := range q {
		prev := line
		line = lineStep(prev, c)
		switch line {
		case lineValue:
			if prev == lineValue {
				s.valByte(c)
			}
		case lineName:
			if prev == lineStart {
				s.nlen, s.nameLong, s.vlen, s.valLong, s.valOWS = 0, false, 0, false, 0
			}
			s.nameByte(c)
		case lineStartCR, lineValueCR:
		case lineEnd, lineEndLF:
			line = lineStart
			if err := s.endField(); err != nil {
				s.line = line
				s.taken(k)
				return k, err
			}
		case headEnd, headEndLF:
			s.line = lineStart
			s.taken(k)
			return k, s.endBlock()
		default:
			s.line = lineStart
			s.taken(k)
			return k, violation(lineViolation[line])
		}
	}
	s.line = line
	s.taken(len(q) - 1)
	return len(q) - 1, nil
}

// taken counts n more bytes of a header block into s.head (trailers are
// not part of a head).
func (s *Inspector) taken(n int) {
	if !s.trailer {
		s.head += n
	}
}

// skip consumes up to s.remain bytes of p and returns how many (>= 1).
func (s *Inspector) skip(p []byte) int {
	n := uint64(len(p))
	if n > s.remain {
		n = s.remain
	}
	s.remain -= n
	return int(n)
}

func (s *Inspector) startRequest() {
	s.st = sReqLine
	s.head = 1 // the byte that started it
	s.mlen, s.inMethod, s.llen = 0, true, 0
	s.nCL, s.nTE, s.upgrade, s.http11, s.clen, s.trailer = 0, 0, false, false, 0, false
}

func (s *Inspector) reqByte(c byte) error {
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

func (s *Inspector) endReqLine() error {
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
	s.st, s.line = sField, lineStart
	return nil
}

func (s *Inspector) nameByte(c byte) {
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

func (s *Inspector) valByte(c byte) {
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
func (s *Inspector) endField() error {
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
		n, ok := parseLength(val)
		if s.valLong || !ok {
			return violation("bad Content-Length")
		}
		s.clen = uint64(n)
	case "transfer-encoding":
		if s.trailer {
			return violation("Transfer-Encoding in trailer")
		}
		s.nTE++
		if s.nTE > 1 {
			return violation("repeated Transfer-Encoding")
		}
		if s.valLong || !chunkedOnly(val) {
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
func (s *Inspector) endBlock() error {
	if s.trailer {
		s.trailer = false
		s.st = sMsgStart
		if s.stopAtEnd {
			return ErrMsgEnd
		}
		return nil
	}
	if s.nTE > 0 && !s.http11 {
		return violation("Transfer-Encoding in a request that is not HTTP/1.1")
	}
	s.blocks++
	if s.MaxHead > 0 && s.head > s.MaxHead && s.OnOversize != nil {
		s.OnOversize(s.blocks)
	}
	if s.nTE > 0 && s.nCL > 0 && s.OnTaint != nil {
		s.OnTaint(s.blocks)
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
