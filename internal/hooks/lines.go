package hooks

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// maxLine is the longest output line written as one; longer lines are
// split.
const maxLine = 64 << 10

// lineWriter writes a hook's output line by line with a prefix, redacted,
// and keeps the last lines. It is used by one goroutine, then read by
// Run after that goroutine has ended.
type lineWriter struct {
	out    io.Writer
	prefix string
	redact func(string) string
	last   []string
	keep   int
	failed bool // out returned an error; stop writing, keep reading
}

func newLineWriter(out io.Writer, prefix string, redact func(string) string, keep int) *lineWriter {
	return &lineWriter{out: out, prefix: prefix, redact: redact, keep: keep}
}

// copyFrom reads r to its end (or a read error) and writes each line.
func (w *lineWriter) copyFrom(r io.Reader) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			w.line(b)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (w *lineWriter) line(b []byte) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	s := string(b)
	if w.redact != nil {
		s = w.redact(s)
	}
	if len(w.last) == w.keep {
		w.last = append(w.last[:0], w.last[1:]...)
	}
	w.last = append(w.last, s)
	if !w.failed {
		if _, err := io.WriteString(w.out, w.prefix+s+"\n"); err != nil {
			w.failed = true
		}
	}
}

func (w *lineWriter) tail() []string {
	return append([]string(nil), w.last...)
}
