package runtime

import (
	"bytes"
	"io"
	"slices"
	"strings"
)

// RedactedMark replaces a secret value in an instance's log. It is the
// same text as config.RedactedValue, which this leaf package cannot import.
const RedactedMark = "[redacted]"

// minSecretLen is the shortest secret (or line of a multi-line secret)
// that is scrubbed from output, as config.Env.Redact does: shorter ones
// would turn ordinary text into noise.
const minSecretLen = 4

// maxHeldLine bounds how much of a line without its newline is held back.
// Past it the line is written in pieces; a secret that straddles a piece
// boundary is still hidden (see redactWriter).
const maxHeldLine = 64 << 10

// redactWriter passes an instance's output to w with every occurrence of
// a secret replaced by RedactedMark, before any of it reaches the disk.
//
// It holds back the last partial line, so a secret that the app writes in
// two write() calls, or that two pipe reads split, is matched whole. A
// partial line longer than maxHeldLine is written up to the last
// len(longest secret)-1 bytes, which can only hold the start of a secret
// not yet seen whole; what is known to lie inside a secret at that cut is
// remembered, so the rest of that secret is hidden too. A secret holding
// line breaks is scrubbed line by line, so its lines are hidden even when
// they come in separate writes. Flush writes what is held; call it at the
// end of the output. Adjacent and overlapping secrets become one mark.
//
// It is not safe for concurrent use: one goroutine copies an instance's
// output.
type redactWriter struct {
	w       io.Writer
	secrets [][]byte // no '\n', at least minSecretLen bytes
	longest int

	buf  []byte
	pre  int  // buf[:pre] is known to lie inside a secret (carried over a forced cut)
	open bool // the last byte written was inside a secret that goes on in buf
	out  []byte
}

// newRedactWriter returns a redactWriter for the values, or nil when no
// value is long enough to be scrubbed (the output can then be copied as
// it is).
func newRedactWriter(w io.Writer, values []string) *redactWriter {
	seen := map[string]bool{}
	r := &redactWriter{w: w}
	for _, v := range values {
		for _, line := range strings.Split(v, "\n") {
			line = strings.TrimSuffix(line, "\r")
			if len(line) < minSecretLen || seen[line] {
				continue
			}
			seen[line] = true
			r.secrets = append(r.secrets, []byte(line))
			r.longest = max(r.longest, len(line))
		}
	}
	if len(r.secrets) == 0 {
		return nil
	}
	return r
}

// Write takes p whole (it returns len(p) unless writing to w fails) and
// writes to w the part of the output that is now known to be safe.
func (r *redactWriter) Write(p []byte) (int, error) {
	r.buf = append(r.buf, p...)
	cut := bytes.LastIndexByte(r.buf, '\n') + 1
	if len(r.buf)-cut > maxHeldLine {
		cut = max(cut, len(r.buf)-(r.longest-1))
	}
	if cut == 0 {
		return len(p), nil
	}
	if err := r.emit(cut); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes everything held, redacted.
func (r *redactWriter) Flush() error {
	if len(r.buf) == 0 {
		return nil
	}
	return r.emit(len(r.buf))
}

// span is a half-open range of buf covered by secrets.
type span struct{ from, to int }

// emit writes buf[:cut] with every covered span replaced by one mark and
// keeps buf[cut:]. Every occurrence of a secret that starts before cut
// lies wholly in buf: either cut follows a newline, which no secret holds,
// or cut is at least longest-1 bytes before the end of buf.
func (r *redactWriter) emit(cut int) error {
	spans := r.covered()
	out := r.out[:0]
	at := 0
	for _, s := range spans {
		if s.from >= cut {
			break
		}
		out = append(out, r.buf[at:s.from]...)
		if !(s.from == 0 && r.open) {
			out = append(out, RedactedMark...)
		}
		at = min(s.to, cut)
	}
	if at < cut {
		out = append(out, r.buf[at:cut]...)
	}
	r.pre, r.open = 0, false
	for _, s := range spans {
		if s.from < cut && s.to > cut {
			r.pre, r.open = s.to-cut, true
		}
	}
	r.out = out
	r.buf = append(r.buf[:0], r.buf[cut:]...)
	_, err := r.w.Write(out)
	return err
}

// covered returns the merged spans of buf that secrets cover, in order.
func (r *redactWriter) covered() []span {
	var spans []span
	if r.pre > 0 {
		spans = append(spans, span{0, r.pre})
	}
	for _, s := range r.secrets {
		for i := 0; i+len(s) <= len(r.buf); {
			j := bytes.Index(r.buf[i:], s)
			if j < 0 {
				break
			}
			spans = append(spans, span{i + j, i + j + len(s)})
			i += j + 1
		}
	}
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
	merged := spans[:1]
	for _, s := range spans[1:] {
		last := &merged[len(merged)-1]
		if s.from <= last.to {
			last.to = max(last.to, s.to)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// Redactor replaces the values given to NewRedactor in the output it
// passes on, as instance logs are scrubbed: for output that does not go
// through an instance log, such as a container's logs read from its engine.
// Close writes what is held at the end. It is not safe for concurrent use.
type Redactor struct{ r *redactWriter }

// NewRedactor returns a Redactor writing to w; with no value long enough
// to be scrubbed it passes the output on as it is.
func NewRedactor(w io.Writer, values []string) io.WriteCloser {
	r := newRedactWriter(w, values)
	if r == nil {
		return nopCloser{w}
	}
	return &Redactor{r}
}

// Write implements io.Writer.
func (r *Redactor) Write(p []byte) (int, error) { return r.r.Write(p) }

// Close writes what is held, redacted.
func (r *Redactor) Close() error { return r.r.Flush() }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
