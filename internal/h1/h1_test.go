package h1

import (
	"errors"
	"testing"
)

// TestListElement: the elements of a Connection-style list come back
// trimmed, at their own offsets, with empty elements empty.
func TestListElement(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"close", []string{"close"}},
		{" keep-alive ,X-Hop,\tclose ", []string{"keep-alive", "X-Hop", "close"}},
		{"a,,b,", []string{"a", "", "b"}},
		{" , ", []string{"", ""}},
		{"ax, x", []string{"ax", "x"}},
	} {
		v := []byte(tc.in)
		var got []string
		for j := 0; j < len(v); {
			s, e, next := listElement(v, j)
			if s < j || e < s || next <= j || next > len(v) {
				t.Fatalf("%q at %d: s %d e %d next %d", tc.in, j, s, e, next)
			}
			got = append(got, string(v[s:e]))
			j = next
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%q: elements %q, want %q", tc.in, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q: element %d %q, want %q", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

// TestNextField: the one field-line scanner refuses what either parser
// must not accept, and measures what it accepts.
func TestNextField(t *testing.T) {
	for _, tc := range []struct {
		head      string
		name, val string
		done, ok  bool
	}{
		{"\r\n", "", "", true, true},
		{"\r\nX", "", "", true, false},   // bytes after the empty line
		{"\n\r\n", "", "", false, false}, // bare LF
		{"A: b\r\n\r\n", "A", "b", false, true},
		{"A:\t b \t\r\n\r\n", "A", "b", false, true},
		{"A:\r\n\r\n", "A", "", false, true},
		{"A : b\r\n\r\n", "", "", false, false},    // whitespace before the colon
		{" A: b\r\n\r\n", "", "", false, false},    // obs-fold
		{"A: b\rc\r\n\r\n", "", "", false, false},  // bare CR in a value
		{"A: b\nc\r\n\r\n", "", "", false, false},  // bare LF in a value
		{"A: b\x00\r\n\r\n", "", "", false, false}, // NUL
		{"A: b\x7f\r\n\r\n", "", "", false, false}, // DEL
		{"A(: b\r\n\r\n", "", "", false, false},    // not a token
		{": b\r\n\r\n", "", "", false, false},      // empty name
		{"A: b", "", "", false, false},             // truncated
	} {
		p := []byte(tc.head)
		var f fieldLine
		done, ok := nextField(p, 0, &f)
		if done != tc.done || ok != tc.ok {
			t.Errorf("%q: done %v ok %v, want %v %v", tc.head, done, ok, tc.done, tc.ok)
			continue
		}
		if ok && !done {
			if name, val := string(p[f.start:f.nameEnd]), string(p[f.valStart:f.valEnd]); name != tc.name || val != tc.val {
				t.Errorf("%q: name %q value %q, want %q %q", tc.head, name, val, tc.name, tc.val)
			}
			if string(p[f.end-2:f.end]) != "\r\n" {
				t.Errorf("%q: line ends at %d, not after its CRLF", tc.head, f.end)
			}
		}
	}
}

func TestParseLength(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "5": 5, "007": 7, "999999999999999999": 999999999999999999,
		"": -1, "+5": -1, "-5": -1, "5 ": -1, " 5": -1, "5,5": -1, "1000000000000000000": -1, "0x5": -1} {
		n, ok := parseLength([]byte(in))
		if ok != (want >= 0) || ok && n != want {
			t.Errorf("parseLength(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
}

// TestFieldLineOneGrammar: the Inspector and nextField read a field line
// by the one table of line.go: a line the parsers accept passes the
// guard, and a line they refuse for obs-fold, a bare CR, a control byte
// or a bad name fails the guard with that reason. A bare LF is the one
// difference: net/http accepts it, so the guard does, the parsers not.
func TestFieldLineOneGrammar(t *testing.T) {
	for _, tc := range []struct {
		line   string
		reason string // the guard's; "" when it passes
		parse  bool   // nextField accepts it
	}{
		{"A: b\r\n", "", true},
		{"A:\t b \t\r\n", "", true},
		{"A:\r\n", "", true},
		{"X-Y: \x80\xff(\"q\")\r\n", "", true},
		{"A: b\n", "", false},
		{" A: b\r\n", "obs-fold or leading whitespace in header line", false},
		{"\tA: b\r\n", "obs-fold or leading whitespace in header line", false},
		{"A : b\r\n", "invalid byte in header name", false},
		{"A(: b\r\n", "invalid byte in header name", false},
		{": b\r\n", "invalid byte in header name", false},
		{"A\r\n", "invalid byte in header name", false},
		{"A: b\rc\r\n", "bare CR in header value", false},
		{"A: b\x00\r\n", "control byte in header value", false},
		{"A: b\x7f\r\n", "control byte in header value", false},
		{"\rX: b\r\n", "bare CR", false},
	} {
		head := []byte(tc.line + "\r\n")
		var f fieldLine
		_, ok := nextField(head, 0, &f)
		if ok != tc.parse {
			t.Errorf("%q: nextField ok %v, want %v", tc.line, ok, tc.parse)
		}
		var ins Inspector
		req := append([]byte("GET / HTTP/1.1\r\n"), head...)
		_, err := ins.Feed(req)
		var fe *FramingError
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%q: guard: %v, want it to pass", tc.line, err)
		case tc.reason == "" && ins.blocks != 1:
			t.Errorf("%q: guard saw %d header blocks, want 1", tc.line, ins.blocks)
		case tc.reason != "" && (!errors.As(err, &fe) || fe.Reason != tc.reason):
			t.Errorf("%q: guard: %v, want %q", tc.line, err, tc.reason)
		}
	}
}

// TestDechunker: the data of chunked bodies split at every byte comes out
// whole, extensions and trailers skipped.
func TestDechunker(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"},
		{"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 15\r\n\r\n", "hello0123456789"},
		{"000005\r\nhello\r\n0\r\n\r\n", "hello"},
		{"0\r\n\r\n", ""},
	} {
		for split := 0; split <= len(tc.body); split++ {
			var d Dechunker
			var got []byte
			for _, p := range [][]byte{[]byte(tc.body[:split]), []byte(tc.body[split:])} {
				for len(p) > 0 {
					data, n := d.Next(p)
					got = append(got, data...)
					p = p[n:]
				}
			}
			if string(got) != tc.want {
				t.Errorf("%q split at %d: %q, want %q", tc.body, split, got, tc.want)
			}
		}
	}
}
