// Package h1 parses and checks HTTP/1.1 heads from bytes: the request and
// response head parsers of the balancer's event-loop path (ParseRequest,
// ParseResponse) and the byte-level framing inspector that guards the
// net/http path against request smuggling (Inspector), with the tables
// they share (tchar, case folding, Content-Length digits).
//
// It does no I/O, runs no server and allocates nothing per request: every
// parser writes into a caller-owned struct whose Spans index the caller's
// buffer. What to do with a field (drop it, read it, refuse the request)
// is the caller's policy, passed in as a Kinds table; this package only
// knows how HTTP/1.1 frames a message (RFC 9110, RFC 9112).
package h1

import "bytes"

// Span is a byte range [Start, End) of a head buffer. The zero Span is
// empty.
type Span struct{ Start, End int32 }

// HeadEnd returns the length of the head in p (through the CRLFCRLF that
// ends it), or -1 when p holds no complete head. from is how much of p
// was searched before (0 for none), so a head that grows read by read is
// scanned about once.
func HeadEnd(p []byte, from int) int {
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

// IsTokenByte reports whether c may appear in an RFC 9110 token (tchar).
func IsTokenByte(c byte) bool {
	return c < 0x80 && tokenTable[c]
}

var tokenTable = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// ValidMethod reports whether m is an RFC 9110 method: a token, one or
// more tchar.
func ValidMethod[T string | []byte](m T) bool {
	if len(m) == 0 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !IsTokenByte(m[i]) {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals the lower-case ASCII string s, ASCII
// letters of b compared case-insensitively.
func EqualFold(b []byte, s string) bool {
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

// equalFoldBoth is EqualFold for an s that may hold upper case too.
func equalFoldBoth(b []byte, s string) bool {
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

// Lower returns s with its ASCII letters in lower case (for building
// Kinds tables from canonical header names).
func Lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ctlByte reports whether c is a control byte that a field value, a
// reason phrase or a chunk extension must not hold (CTL, RFC 5234; HTAB
// is allowed, RFC 9110 5.5). A bare CR or LF in a value is how a field
// is smuggled into another line, and NUL is read differently by
// different servers.
func ctlByte(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f }

// parseLength parses a Content-Length value: 1 to 18 decimal digits, so
// the result fits an int64. A sign, whitespace inside or a list ("5, 5",
// which RFC 9110 8.6 lets a recipient merge) is refused: two parsers
// must never read two lengths from one head.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// chunkedOnly reports whether a Transfer-Encoding value is "chunked"
// alone. Any other coding, or a list ("gzip, chunked"), is refused rather
// than decoded: net/http answers unknown codings with 501, and a proxy
// and its target reading different codings disagree on where a body
// ends (RFC 9112 6.1).
func chunkedOnly(v []byte) bool { return EqualFold(v, "chunked") }

// maxNameLen is the longest field name the parsers look up by name; every
// name they read is shorter, and longer ones are other fields.
const maxNameLen = 20

// lowerName writes name in lower case to buf and returns that view of
// buf, or nil when name is longer than buf.
func lowerName(buf *[maxNameLen]byte, name []byte) []byte {
	if len(name) > len(buf) {
		return nil
	}
	for j, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[j] = c
	}
	return buf[:len(name)]
}

// fieldLine is a field line of a head: p[start:end] is the whole line,
// CRLF included, p[start:nameEnd] the name and p[valStart:valEnd] the
// value without the whitespace around it.
type fieldLine struct{ start, nameEnd, valStart, valEnd, end int }

// listElement returns the element of the comma-separated list v that
// starts at v[j:], as v[s:e] without the whitespace around it, and the
// index after its comma (len(v) after the last element).
func listElement(v []byte, j int) (s, e, next int) {
	e, next = len(v), len(v)
	if k := bytes.IndexByte(v[j:], ','); k >= 0 {
		e, next = j+k, j+k+1
	}
	el := v[j:e]
	t := bytes.TrimSpace(el)
	if len(t) == 0 {
		return j, j, next
	}
	s = j + cap(el) - cap(t) // t is a subslice of el: its offset in el
	return s, s + len(t), next
}
