package h1

// The field-line grammar, written once as a table: the head parsers run
// it over a whole head (nextField) and the Inspector byte by byte over a
// stream, so the two cannot disagree on what a field line is, where it
// ends, or which bytes make it an obs-fold, a bare CR or a control byte.
//
//	field-line = token ":" *( OWS / VCHAR / obs-text ) CRLF   (RFC 9112 5)
//
// with no whitespace before the colon and none at the start of a line
// (obs-fold, RFC 9112 5.2, refused), no CTL in the value but HTAB, and
// the empty line (CRLF) ending the head. A line may also end in a bare
// LF (lineEndLF, headEndLF): net/http accepts that, so the Inspector
// must follow it; the parsers refuse it.
//
//	lineStart --tchar--> lineName --tchar--> lineName --":"--> lineValue
//	lineStart --CR--> lineStartCR --LF--> headEnd
//	lineValue --VCHAR, OWS, obs-text--> lineValue --CR--> lineValueCR --LF--> lineEnd

// lineState is a state of the field-line scanner; the states from
// lineEnd on are final (the line or the head ended, or a violation).
type lineState uint8

const (
	lineStart   lineState = iota // at the start of a line
	lineStartCR                  // CR at the start of a line
	lineName                     // in a field name
	lineValue                    // after the colon: whitespace and value
	lineValueCR                  // CR after the value

	lineEnd   // the LF of a field line's CRLF
	lineEndLF // a bare LF ending a field line
	headEnd   // the LF of the empty line's CRLF: the head is complete
	headEndLF // a bare LF as the empty line

	// Violations, named by lineViolation.
	badObsFold
	badName
	badValue
	badValueCR
	badStartCR

	nLineStates
)

// lineViolation says what is wrong at each violation state.
var lineViolation = [nLineStates]string{
	badObsFold: "obs-fold or leading whitespace in header line",
	badName:    "invalid byte in header name",
	badValue:   "control byte in header value",
	badValueCR: "bare CR in header value",
	badStartCR: "bare CR",
}

// Byte classes of the grammar.
const (
	cOther = iota // VCHAR that is no tchar, and obs-text (0x80-0xff)
	cToken        // tchar
	cColon
	cWS // SP, HTAB
	cCR
	cLF
	cCTL // other control bytes and DEL
	nClasses
)

var byteClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == ':':
			t[c] = cColon
		case c == ' ' || c == '\t':
			t[c] = cWS
		case c == '\r':
			t[c] = cCR
		case c == '\n':
			t[c] = cLF
		case ctlByte(byte(c)):
			t[c] = cCTL
		case IsTokenByte(byte(c)):
			t[c] = cToken
		}
	}
	return t
}()

// lineNext is the transition table: lineNext[state][byteClass[c]]. Final
// states have no row (a scanner restarts at lineStart after a line).
var lineNext = func() (t [lineEnd][nClasses]lineState) {
	fill := func(st, to lineState) {
		for k := range t[st] {
			t[st][k] = to
		}
	}
	fill(lineStart, badName)
	t[lineStart][cToken] = lineName
	t[lineStart][cWS] = badObsFold
	t[lineStart][cCR] = lineStartCR
	t[lineStart][cLF] = headEndLF

	fill(lineStartCR, badStartCR)
	t[lineStartCR][cLF] = headEnd

	fill(lineName, badName)
	t[lineName][cToken] = lineName
	t[lineName][cColon] = lineValue

	fill(lineValue, lineValue)
	t[lineValue][cCR] = lineValueCR
	t[lineValue][cLF] = lineEndLF
	t[lineValue][cCTL] = badValue

	fill(lineValueCR, badValueCR)
	t[lineValueCR][cLF] = lineEnd
	return t
}()

// lineStep returns the state after c in state st (st < lineEnd).
func lineStep(st lineState, c byte) lineState { return lineNext[st][byteClass[c]] }

// stays[st][c] reports lineStep(st, c) == st: derived from lineNext, for
// the parsers' loops over a run of name or value bytes.
var stays = func() (t [lineEnd][256]bool) {
	for st := range lineEnd {
		for c := range 256 {
			t[st][c] = lineStep(st, byte(c)) == st
		}
	}
	return t
}()

// nextField scans into f the field line at p[i:] of a head p that ends
// with its CRLFCRLF, by the table above. done is true at the empty line
// that ends p. ok is false for anything but a token name, a colon, a
// value without control bytes and a CRLF: so no whitespace before the
// colon, no obs-fold, no bare CR or LF, and no bytes after the empty
// line.
func nextField(p []byte, i int, f *fieldLine) (done, ok bool) {
	if i >= len(p) {
		return false, false
	}
	f.start = i
	switch lineStep(lineStart, p[i]) {
	case lineName:
	case lineStartCR:
		return true, i+2 == len(p) && lineStep(lineStartCR, p[i+1]) == headEnd
	default:
		return false, false
	}
	for i++; i < len(p) && stays[lineName][p[i]]; i++ {
	}
	if i == len(p) || lineStep(lineName, p[i]) != lineValue {
		return false, false
	}
	f.nameEnd = i
	for i++; i < len(p) && (p[i] == ' ' || p[i] == '\t'); i++ {
	}
	f.valStart = i
	for ; i < len(p) && stays[lineValue][p[i]]; i++ {
	}
	if i+1 >= len(p) || lineStep(lineValue, p[i]) != lineValueCR || lineStep(lineValueCR, p[i+1]) != lineEnd {
		return false, false // a bare CR or LF, a control byte, or the end of p
	}
	ve := i
	for ve > f.valStart && (p[ve-1] == ' ' || p[ve-1] == '\t') {
		ve--
	}
	f.valEnd, f.end = ve, i+2
	return false, true
}
