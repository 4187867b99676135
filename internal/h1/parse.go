package h1

import "bytes"

// The head parsers of the balancer's event-loop fast path. They accept a
// strict subset of what the net/http path accepts: a request head outside
// that subset is not an error but a reason to hand the connection to the
// net/http path (with the smuggling guard), which then answers it.
// So every framing decision the fast path makes is on a head that is
// unambiguous by construction: one Content-Length at most, no
// Transfer-Encoding, CRLF line ends, token field names, no obs-fold and
// no control bytes.

// Bounds of what the parsers keep. A request with more fields or cookies
// is outside the fast subset (ParseRequest returns false, so the caller
// hands it to the net/http path); a response with more fields is
// malformed (a response cannot be handed over).
const (
	// MaxFields bounds the kept fields of a request.
	MaxFields = 64
	// MaxCookies bounds the Cookie fields of a request.
	MaxCookies = 4
	// MaxResponseFields bounds the kept fields of a response.
	MaxResponseFields = 512
)

// Request is a parsed request head; its Spans index the buffer that
// ParseRequest was given, so they are valid while that buffer is.
type Request struct {
	Method, Target, Path, Host Span
	Size                       int              // bytes of the head, final CRLF included
	ContentLength              int64            // 0 when absent
	Close                      bool             // Connection: close
	Upgrade                    bool             // a WebSocket handshake (Upgrade: websocket, Connection: upgrade)
	ConnUpgrade                bool             // Connection names upgrade
	RequestID                  Span             // the last X-Request-Id value
	NRequestID                 int              // how many X-Request-Id fields the head has
	AcceptEncoding             Span             // the Accept-Encoding value (kept in Fields too); zero when none
	Cookies                    [MaxCookies]Span // Cookie field values
	NCookies                   int
	NFields                    int
	Fields                     [MaxFields]Span // kept field lines, CRLF included
}

// Query is the span of the request target's query, without the '?';
// zero when there is none.
func (h *Request) Query() Span {
	if h.Target.End > h.Path.End {
		return Span{h.Path.End + 1, h.Target.End}
	}
	return Span{}
}

// FieldKind says what ParseRequest does with a request field, by name.
type FieldKind uint8

// The kinds of request fields. FieldOther fields are kept as they are.
const (
	FieldOther  FieldKind = iota
	FieldHop              // hop-by-hop: dropped
	FieldClient           // client facts the caller sets itself: dropped
	FieldHost
	FieldContentLength
	FieldConnection
	FieldRequestID
	FieldCookie
	FieldUpgrade
	FieldRefuse         // outside the subset: ParseRequest returns false
	FieldAcceptEncoding // kept, and its value noted (AcceptEncoding); a second one is outside the subset
)

// Kinds maps lower-cased field names to their kind; a name that is not
// in it is FieldOther. ParseResponse drops the names of kind FieldHop
// too. A Kinds is read-only once built, so safe to share.
type Kinds map[string]FieldKind

// ParseRequest parses the request head p (through its CRLFCRLF, as
// HeadEnd measures it) into h, classifying fields by kinds. It returns
// false when the request is outside the fast subset.
func ParseRequest(p []byte, h *Request, kinds Kinds) bool {
	*h = Request{Size: len(p), ContentLength: 0}
	// Request line: method SP origin-form SP HTTP/1.1 CRLF.
	i := bytes.IndexByte(p[:min(len(p), 17)], ' ')
	if i <= 0 || !ValidMethod(p[:i]) {
		return false
	}
	h.Method = Span{0, int32(i)}
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
	h.Target, h.Path = Span{int32(ts), int32(i)}, Span{int32(ts), int32(pathEnd)}
	if !bytes.HasPrefix(p[i:], []byte(" HTTP/1.1\r\n")) {
		return false
	}
	i += len(" HTTP/1.1\r\n")
	nHost, nCL := 0, 0
	var lname [maxNameLen]byte
	var f fieldLine
	for {
		done, ok := nextField(p, i, &f)
		if !ok {
			return false
		}
		if done {
			break
		}
		ls, vs, ve := f.start, f.valStart, f.valEnd
		i = f.end
		kind := FieldOther
		if name := lowerName(&lname, p[ls:f.nameEnd]); name != nil {
			kind = kinds[string(name)] // no allocation: a map index by a []byte conversion
		}
		val := p[vs:ve]
		switch kind {
		case FieldRefuse:
			return false
		case FieldHop, FieldClient:
			continue
		case FieldHost:
			nHost++
			if !validHostBytes(val) {
				return false
			}
			h.Host = Span{int32(vs), int32(ve)}
		case FieldContentLength:
			nCL++
			n, ok := parseLength(val)
			if nCL > 1 || !ok {
				return false
			}
			h.ContentLength = n
		case FieldConnection:
			if !connectionTokens(val, &h.Close, &h.ConnUpgrade) {
				return false
			}
			continue
		case FieldUpgrade:
			// Only a WebSocket handshake; h2c and the rest go to net/http
			// (which never forwards h2c).
			if h.Upgrade || !EqualFold(val, "websocket") {
				return false
			}
			h.Upgrade = true
			continue
		case FieldRequestID:
			h.NRequestID++
			h.RequestID = Span{int32(vs), int32(ve)}
			continue
		case FieldAcceptEncoding:
			if h.AcceptEncoding.End != 0 {
				return false // the net/http path joins the values
			}
			h.AcceptEncoding = Span{int32(vs), int32(ve)} // End > 0 even when empty: a field precedes it
		case FieldCookie:
			if h.NCookies == MaxCookies {
				return false
			}
			h.Cookies[h.NCookies] = Span{int32(vs), int32(ve)}
			h.NCookies++
		}
		if h.NFields == MaxFields {
			return false
		}
		h.Fields[h.NFields] = Span{int32(ls), int32(i)}
		h.NFields++
	}
	if h.Upgrade != h.ConnUpgrade || h.Upgrade && (h.ContentLength != 0 || string(p[:h.Method.End]) != "GET") {
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
	for j := 0; j < len(v); {
		s, e, next := listElement(v, j)
		f := v[s:e]
		j = next
		switch {
		case len(f) == 0:
		case EqualFold(f, "close"):
			*close = true
		case EqualFold(f, "keep-alive"):
		case EqualFold(f, "upgrade"):
			*upgrade = true
		default:
			return false
		}
	}
	return true
}

// Response is a parsed response head; its Spans index the buffer that
// ParseResponse was given.
type Response struct {
	Status        int
	Size          int   // bytes of the head, final CRLF included
	ContentLength int64 // -1 when absent
	Chunked       bool  // Transfer-Encoding: chunked (not kept in Fields)
	Close         bool  // the target will close: do not reuse the connection
	UpgradeWS     bool  // Upgrade: websocket (for a 101)
	ContentType   Span  // the first Content-Type value; zero when none
	NFields       int
	Fields        [MaxResponseFields]Span // kept field lines, CRLF included
	drop          [4]Span                 // extra field names listed in Connection
	ndrop         int
}

// ErrBadResponse is a response head that cannot be relayed safely.
var ErrBadResponse = &protocolError{"malformed response from target"}

type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

// ParseResponse parses the response head p (through its CRLFCRLF) into
// h. Hop-by-hop fields (Connection, Transfer-Encoding, Upgrade, the names
// of kind FieldHop in kinds and those Connection lists) and X-Request-Id
// are not kept in h.Fields. It returns ErrBadResponse for a head it
// cannot relay safely.
func ParseResponse(p []byte, h *Response, kinds Kinds) error {
	h.Status, h.Size, h.ContentLength, h.Chunked, h.Close, h.UpgradeWS, h.NFields, h.ndrop = 0, len(p), -1, false, false, false, 0, 0
	h.ContentType = Span{}
	if len(p) < 14 || string(p[:7]) != "HTTP/1." || (p[7] != '1' && p[7] != '0') || p[8] != ' ' {
		return ErrBadResponse
	}
	if p[7] == '0' {
		h.Close = true // HTTP/1.0 target: no keep-alive negotiation here
	}
	for _, c := range p[9:12] {
		if c < '0' || c > '9' {
			return ErrBadResponse
		}
		h.Status = h.Status*10 + int(c-'0')
	}
	if h.Status < 100 || (p[12] != ' ' && p[12] != '\r') {
		return ErrBadResponse
	}
	i := bytes.IndexByte(p, '\n') + 1
	if i <= 0 || p[i-2] != '\r' {
		return ErrBadResponse
	}
	for _, c := range p[12 : i-2] {
		// The reason phrase is relayed as it is: no control bytes.
		if ctlByte(c) {
			return ErrBadResponse
		}
	}
	nCL := 0
	var lname [maxNameLen]byte
	var f fieldLine
	for {
		done, ok := nextField(p, i, &f)
		if !ok {
			return ErrBadResponse
		}
		if done {
			break
		}
		ls, vs, ve := f.start, f.valStart, f.valEnd
		i = f.end
		val := p[vs:ve]
		keep := true
		if name := lowerName(&lname, p[ls:f.nameEnd]); name != nil {
			switch string(name) {
			case "content-length":
				n, ok := parseLength(val)
				if !ok || nCL > 0 && n != h.ContentLength {
					return ErrBadResponse
				}
				nCL++
				h.ContentLength = n
				keep = nCL == 1
			case "transfer-encoding":
				if h.Chunked || !chunkedOnly(val) {
					return ErrBadResponse
				}
				h.Chunked = true
				keep = false
			case "connection":
				for j := 0; j < len(val); {
					ts, te, next := listElement(val, j)
					tok := val[ts:te]
					j = next
					switch {
					case len(tok) == 0, EqualFold(tok, "keep-alive"):
					case EqualFold(tok, "close"):
						h.Close = true
					default:
						if h.ndrop == len(h.drop) {
							return ErrBadResponse
						}
						h.drop[h.ndrop] = Span{int32(vs + ts), int32(vs + te)}
						h.ndrop++
					}
				}
				keep = false
			case "upgrade":
				h.UpgradeWS = EqualFold(val, "websocket")
				keep = false
			case "content-type":
				if h.ContentType.End == 0 {
					h.ContentType = Span{int32(vs), int32(ve)}
				}
			case "x-request-id":
				keep = false // the balancer sets its own
			case "trailer":
				// Kept: the chunked body is relayed as it is, trailers
				// included, so their announcement goes with it (the
				// net/http path rebuilds it from the trailers it relays).
			default:
				keep = kinds[string(name)] != FieldHop
			}
		}
		if !keep {
			continue
		}
		if h.NFields == MaxResponseFields {
			return ErrBadResponse
		}
		h.Fields[h.NFields] = Span{int32(ls), int32(i)}
		h.NFields++
	}
	if h.Chunked {
		// RFC 9112 6.3: Transfer-Encoding overrides Content-Length, which
		// must then not be relayed; such a target is not reused.
		if nCL > 0 {
			h.Close = true
			h.ContentLength = -1
			h.removeField(p, "content-length")
		}
	}
	if h.ndrop > 0 {
		for k := 0; k < h.ndrop; k++ {
			h.removeField(p, string(p[h.drop[k].Start:h.drop[k].End]))
		}
	}
	return nil
}

// removeField drops kept fields named name (case-insensitive).
func (h *Response) removeField(p []byte, name string) {
	out := h.Fields[:0]
	for _, f := range h.Fields[:h.NFields] {
		line := p[f.Start:f.End]
		if c := bytes.IndexByte(line, ':'); c == len(name) && equalFoldBoth(line[:c], name) {
			continue
		}
		out = append(out, f)
	}
	h.NFields = len(out)
}
