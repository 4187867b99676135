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
