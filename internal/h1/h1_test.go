package h1

import "testing"

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
