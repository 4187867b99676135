package lb

import "bytes"

// The fast path's HTTP/1.1 head parsers. They accept a strict subset of
// what the net/http path accepts: a request head outside that subset is
// not an error but a reason to hand the connection to the net/http path
// (with the smuggling guard), which then answers it exactly as before.
// So every framing decision the fast path makes is on a head that is
// unambiguous by construction: one Content-Length at most, no
// Transfer-Encoding, CRLF line ends, token field names, no obs-fold and
// no control bytes.

// span is a byte range [s, e) of a head buffer.
type span struct{ s, e int32 }

// maxFastFields bounds the fields of a request on the fast path (more are
// handed over); maxRespFields those of a relayed response (more get 502:
// a response cannot be handed over).
const (
	maxFastFields = 64
	// maxFastCookies bounds the Cookie fields of a request on the fast
	// path (more are handed over).
	maxFastCookies = 4
	maxRespFields  = 512
)

// reqHead is a parsed request head; spans index the connection's buffer.
type reqHead struct {
	method, target, path, host span
	size                       int // bytes of the head, final CRLF included
	clen                       int64
	close                      bool // Connection: close
	upgrade                    bool // a WebSocket handshake (Upgrade: websocket, Connection: upgrade)
	connUpgrade                bool // Connection names upgrade
	reqID                      span // a single X-Request-Id; zero when none or several
	nReqID                     int
	cookies                    [maxFastCookies]span // Cookie field values
	nCookie                    int
	nfields                    int
	fields                     [maxFastFields]span // kept field lines, CRLF included
}

// headEnd returns the length of the head in p (through CRLFCRLF), or -1.
func headEnd(p []byte, from int) int {
	if from > 3 {
		from -= 3
	} else {
		from = 0
	}
	if i := bytes.Index(p[from:], crlfcrlf); i >= 0 {
		return from + i + 4
	}
	return -1
}

var crlfcrlf = []byte("\r\n\r\n")

// fieldKind classifies the field names the fast path cares about.
type fieldKind uint8

const (
	fOther  fieldKind = iota
	fHop              // hop-by-hop (hopHeaders): dropped
	fClient           // client facts the balancer sets itself (clientHeaders): dropped
	fHost
	fContentLength
	fConnection
	fRequestID
	fCookie
	fUpgrade
	fFallback // only the net/http path handles these
)

// requestFieldKind classifies a lower-cased request field name.
func requestFieldKind(name []byte) fieldKind {
	return fieldKinds[string(name)] // no allocation: a map index by a []byte conversion
}

// parseRequest parses the request head p[:n] (n from headEnd). It returns
// false when the request is outside the fast subset.
func parseRequest(p []byte, h *reqHead) bool {
	*h = reqHead{size: len(p), clen: 0}
	// Request line: method SP origin-form SP HTTP/1.1 CRLF.
	i := bytes.IndexByte(p[:min(len(p), 17)], ' ')
	if i <= 0 || !validMethod(p[:i]) {
		return false
	}
	h.method = span{0, int32(i)}
	if string(p[:i]) == "CONNECT" {
		return false
	}
	i++
	ts := i
	if i >= len(p) || p[i] != '/' {
		return false
	}
	query := false
	pathEnd := -1
	for ; i < len(p) && p[i] != ' '; i++ {
		c := p[i]
		switch {
		case c == '?':
			if !query {
				query, pathEnd = true, i
			}
		case c == '%':
			if !query {
				return false // the net/http path routes on the decoded path
			}
		case !uriByte(c):
			return false
		}
	}
	if pathEnd < 0 {
		pathEnd = i
	}
	h.target, h.path = span{int32(ts), int32(i)}, span{int32(ts), int32(pathEnd)}
	if !bytes.HasPrefix(p[i:], []byte(" HTTP/1.1\r\n")) {
		return false
	}
	i += len(" HTTP/1.1\r\n")
	nHost, nCL := 0, 0
	var lname [20]byte
	for {
		if i+2 > len(p) {
			return false
		}
		if p[i] == '\r' {
			if p[i+1] != '\n' || i+2 != len(p) {
				return false
			}
			break
		}
		ls := i
		for i < len(p) && isTokenByte(p[i]) {
			i++
		}
		if i == ls || i >= len(p) || p[i] != ':' {
			return false
		}
		name := p[ls:i]
		kind := fOther
		if len(name) <= len(lname) {
			for j, c := range name {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				lname[j] = c
			}
			kind = requestFieldKind(lname[:len(name)])
		}
		i++
		for i < len(p) && (p[i] == ' ' || p[i] == '\t') {
			i++
		}
		vs := i
		for i < len(p) && p[i] != '\r' {
			c := p[i]
			if c < 0x20 && c != '\t' || c == 0x7f {
				return false
			}
			i++
		}
		if i+1 >= len(p) || p[i+1] != '\n' {
			return false
		}
		ve := i
		for ve > vs && (p[ve-1] == ' ' || p[ve-1] == '\t') {
			ve--
		}
		i += 2
		val := p[vs:ve]
		switch kind {
		case fFallback:
			return false
		case fHop, fClient:
			continue
		case fHost:
			nHost++
			if !validHostBytes(val) {
				return false
			}
			h.host = span{int32(vs), int32(ve)}
		case fContentLength:
			nCL++
			if nCL > 1 || len(val) == 0 || len(val) > 18 {
				return false
			}
			var n int64
			for _, c := range val {
				if c < '0' || c > '9' {
					return false
				}
				n = n*10 + int64(c-'0')
			}
			h.clen = n
		case fConnection:
			if !connectionTokens(val, &h.close, &h.connUpgrade) {
				return false
			}
			continue
		case fUpgrade:
			// Only a WebSocket handshake; h2c and the rest go to net/http
			// (which never forwards h2c).
			if h.upgrade || !asciiEqualFold(val, "websocket") {
				return false
			}
			h.upgrade = true
			continue
		case fRequestID:
			h.nReqID++
			h.reqID = span{int32(vs), int32(ve)}
			continue
		case fCookie:
			if h.nCookie == maxFastCookies {
				return false
			}
			h.cookies[h.nCookie] = span{int32(vs), int32(ve)}
			h.nCookie++
		}
		if h.nfields == maxFastFields {
			return false
		}
		h.fields[h.nfields] = span{int32(ls), int32(i)}
		h.nfields++
	}
	if h.upgrade != h.connUpgrade || h.upgrade && (h.clen != 0 || string(p[:h.method.e]) != "GET") {
		return false
	}
	return nHost == 1
}

// uriByte reports whether c may appear unescaped in an origin-form target
// as the net/http path forwards it unchanged: unreserved, sub-delims,
// ":", "@", "/", "?" (RFC 3986).
func uriByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/', '?':
		return true
	}
	return false
}

// validHostBytes accepts a non-empty host[:port] of letters, digits and
// "-._:[]" (names, IPv4, bracketed IPv6).
func validHostBytes(v []byte) bool {
	if len(v) == 0 || len(v) > 255 {
		return false
	}
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == ':' || c == '[' || c == ']':
		default:
			return false
		}
	}
	return true
}

// connectionTokens accepts a Connection value of "close", "keep-alive"
// and "upgrade" tokens only (anything else names headers to strip, which
// the net/http path does).
func connectionTokens(v []byte, close, upgrade *bool) bool {
	for len(v) > 0 {
		var f []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			f, v = v[:i], v[i+1:]
		} else {
			f, v = v, nil
		}
		f = bytes.TrimSpace(f)
		switch {
		case len(f) == 0:
		case asciiEqualFold(f, "close"):
			*close = true
		case asciiEqualFold(f, "keep-alive"):
		case asciiEqualFold(f, "upgrade"):
			*upgrade = true
		default:
			return false
		}
	}
	return true
}

// respHead is a parsed response head.
type respHead struct {
	status  int
	size    int
	clen    int64 // -1 when absent
	chunked bool
	close   bool // the target will close: do not reuse the connection
	upWS    bool // Upgrade: websocket (for a 101)
	ctype   span // the first Content-Type value; zero when none
	nfields int
	fields  [maxRespFields]span // kept field lines, CRLF included
	drop    [4]span             // extra field names listed in Connection
	ndrop   int
}

// errBadResponse is a response head the fast path cannot relay safely.
var errBadResponse = &protocolError{"malformed response from target"}

type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

// parseResponse parses the response head p (through CRLFCRLF).
func parseResponse(p []byte, h *respHead) error {
	h.status, h.size, h.clen, h.chunked, h.close, h.upWS, h.nfields, h.ndrop = 0, len(p), -1, false, false, false, 0, 0
	h.ctype = span{}
	if len(p) < 14 || string(p[:7]) != "HTTP/1." || (p[7] != '1' && p[7] != '0') || p[8] != ' ' {
		return errBadResponse
	}
	if p[7] == '0' {
		h.close = true // HTTP/1.0 target: no keep-alive negotiation here
	}
	for _, c := range p[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		h.status = h.status*10 + int(c-'0')
	}
	if h.status < 100 || (p[12] != ' ' && p[12] != '\r') {
		return errBadResponse
	}
	i := bytes.IndexByte(p, '\n') + 1
	if i <= 0 || p[i-2] != '\r' {
		return errBadResponse
	}
	for _, c := range p[12 : i-2] {
		// The reason phrase is relayed as it is: no control bytes.
		if c < 0x20 && c != '\t' || c == 0x7f {
			return errBadResponse
		}
	}
	nCL := 0
	var lname [20]byte
	for {
		if i+2 > len(p) {
			return errBadResponse
		}
		if p[i] == '\r' {
			if p[i+1] != '\n' || i+2 != len(p) {
				return errBadResponse
			}
			break
		}
		ls := i
		for i < len(p) && isTokenByte(p[i]) {
			i++
		}
		if i == ls || i >= len(p) || p[i] != ':' {
			return errBadResponse
		}
		name := p[ls:i]
		i++
		for i < len(p) && (p[i] == ' ' || p[i] == '\t') {
			i++
		}
		vs := i
		for i < len(p) && p[i] != '\r' {
			if c := p[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return errBadResponse
			}
			i++
		}
		if i+1 >= len(p) || p[i+1] != '\n' {
			return errBadResponse
		}
		ve := i
		for ve > vs && (p[ve-1] == ' ' || p[ve-1] == '\t') {
			ve--
		}
		i += 2
		val := p[vs:ve]
		keep := true
		if len(name) <= len(lname) {
			for j, c := range name {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				lname[j] = c
			}
			switch string(lname[:len(name)]) {
			case "content-length":
				var n int64
				if len(val) == 0 || len(val) > 18 {
					return errBadResponse
				}
				for _, c := range val {
					if c < '0' || c > '9' {
						return errBadResponse
					}
					n = n*10 + int64(c-'0')
				}
				if nCL > 0 && n != h.clen {
					return errBadResponse
				}
				nCL++
				h.clen = n
				keep = nCL == 1
			case "transfer-encoding":
				if h.chunked || !asciiEqualFold(val, "chunked") {
					return errBadResponse
				}
				h.chunked = true
				keep = false
			case "connection":
				for _, f := range bytes.Split(val, []byte(",")) {
					f = bytes.TrimSpace(f)
					switch {
					case len(f) == 0, asciiEqualFold(f, "keep-alive"):
					case asciiEqualFold(f, "close"):
						h.close = true
					default:
						if h.ndrop == len(h.drop) {
							return errBadResponse
						}
						h.drop[h.ndrop] = span{int32(vs + bytes.Index(val, f)), 0}
						h.drop[h.ndrop].e = h.drop[h.ndrop].s + int32(len(f))
						h.ndrop++
					}
				}
				keep = false
			case "upgrade":
				h.upWS = asciiEqualFold(val, "websocket")
				keep = false
			case "content-type":
				if h.ctype.e == 0 {
					h.ctype = span{int32(vs), int32(ve)}
				}
			case "x-request-id":
				keep = false // the balancer sets its own
			case "trailer":
				// Kept: the chunked body is relayed as it is, trailers
				// included, so their announcement goes with it (the
				// net/http path rebuilds it from the trailers it relays).
			default:
				keep = fieldKinds[string(lname[:len(name)])] != fHop
			}
		}
		if !keep {
			continue
		}
		if h.nfields == maxRespFields {
			return errBadResponse
		}
		h.fields[h.nfields] = span{int32(ls), int32(i)}
		h.nfields++
	}
	if h.chunked {
		// RFC 9112 6.3: Transfer-Encoding overrides Content-Length, which
		// must then not be relayed; such a target is not reused.
		if nCL > 0 {
			h.close = true
			h.clen = -1
			h.removeField(p, "content-length")
		}
	}
	if h.ndrop > 0 {
		for k := 0; k < h.ndrop; k++ {
			h.removeField(p, string(p[h.drop[k].s:h.drop[k].e]))
		}
	}
	return nil
}

// removeField drops kept fields named name (case-insensitive).
func (h *respHead) removeField(p []byte, name string) {
	out := h.fields[:0]
	for _, f := range h.fields[:h.nfields] {
		line := p[f.s:f.e]
		if c := bytes.IndexByte(line, ':'); c == len(name) && asciiEqualFoldBytes(line[:c], name) {
			continue
		}
		out = append(out, f)
	}
	h.nfields = len(out)
}

func asciiEqualFoldBytes(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
