package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// logFile is an append-only log that rotates by size: path, path.1, ... path.<files-1>.
// Writers and followers may use it concurrently.
type logFile struct {
	path  string
	max   int64
	files int

	mu      sync.Mutex
	f       *os.File
	size    int64
	changed chan struct{} // closed and replaced on every write and on close
	closed  bool
	subs    map[*follower]struct{}
}

// maxFollowBuffer bounds the output buffered for one follower that does not keep up.
const maxFollowBuffer = 1 << 20

// follower receives a copy of everything written after it subscribed, independent of
// rotation, so `logs -f` never loses lines to a fast writer.
type follower struct {
	buf     []byte
	dropped int64
}

// logMode is the mode of every log file: an app's output may hold
// secrets that were not known to Shoal, so only Shoal's user reads it.
const logMode = 0o600

// openLog opens (creating it) the log at path for appending. Log files
// left with a looser mode by an earlier version, path.1... included, are
// set to logMode.
func openLog(path string, max int64, files int) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, logMode)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm() != logMode {
		err = f.Chmod(logMode)
	}
	for i := 1; err == nil && i < files; i++ {
		err = os.Chmod(path+"."+strconv.Itoa(i), logMode)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open log: %w", err)
	}
	return &logFile{path: path, max: max, files: files, f: f, size: fi.Size(),
		changed: make(chan struct{}), subs: map[*follower]struct{}{}}, nil
}

// Write appends p. A chunk that would take the file past max is split at its last line
// break that still fits, the rest going to a fresh file after rotation, so files stay
// within max and lines stay whole; only a single line longer than max is cut.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	defer l.notify()
	written := 0
	for len(p) > 0 {
		room := l.max - l.size
		chunk := p
		if int64(len(p)) > room {
			cut := -1
			if room > 0 {
				cut = bytes.LastIndexByte(p[:room], '\n')
			}
			switch {
			case cut >= 0:
				chunk = p[:cut+1]
			case l.size > 0:
				if err := l.rotate(); err != nil {
					return written, fmt.Errorf("rotate %s: %w", l.path, err)
				}
				continue
			default:
				chunk = p[:l.max]
			}
		}
		n, err := l.f.Write(chunk)
		l.size += int64(n)
		for sub := range l.subs {
			if len(sub.buf)+n > maxFollowBuffer {
				sub.dropped += int64(n)
			} else {
				sub.buf = append(sub.buf, chunk[:n]...)
			}
		}
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// rotate shifts path.i to path.i+1 (dropping the oldest), path to path.1, and opens a new
// empty path. The caller holds mu.
func (l *logFile) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	if l.files <= 1 {
		if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for i := l.files - 1; i >= 1; i-- {
		from := l.path
		if i > 1 {
			from = l.path + "." + strconv.Itoa(i-1)
		}
		if err := os.Rename(from, l.path+"."+strconv.Itoa(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, logMode)
	if err != nil {
		return err
	}
	l.f, l.size = f, 0
	return nil
}

func (l *logFile) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Close closes the file; followers see closed=true from watch and stop after a last read.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.notify()
	return l.f.Close()
}

// subscribe opens the current file and registers a follower, atomically with respect to
// writes: the file's first size bytes plus everything the follower then receives is the
// whole output, without gap or overlap.
func (l *logFile) subscribe() (*os.File, int64, *follower, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.Open(l.path)
	if err != nil {
		return nil, 0, nil, err
	}
	sub := &follower{}
	if !l.closed {
		l.subs[sub] = struct{}{}
	}
	return f, l.size, sub, nil
}

func (l *logFile) unsubscribe(sub *follower) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.subs, sub)
}

// take returns and clears what sub has buffered, a channel closed at the next change, and
// whether the log is closed (no more output will come).
func (l *logFile) take(sub *follower) ([]byte, int64, <-chan struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, dropped := sub.buf, sub.dropped
	sub.buf, sub.dropped = nil, 0
	return b, dropped, l.changed, l.closed
}

// lastLines returns the suffix of b holding its last n lines (a final line without a
// newline counts), and how many lines that is.
func lastLines(b []byte, n int) ([]byte, int) {
	if n <= 0 || len(b) == 0 {
		return nil, 0
	}
	end := len(b)
	if b[end-1] == '\n' {
		end--
	}
	count := 0
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			count++
			if count == n {
				return b[i+1:], n
			}
		}
	}
	return b, count + 1
}

// tail writes the last n lines of the log at path (reading rotated files when path alone
// has fewer) to w. If lf is non-nil and follow is set, it then copies new output as it is
// written until lf is closed (returns nil) or ctx ends (returns ctx's error). A follower
// that falls more than maxFollowBuffer behind gets a note of how much it missed.
func tail(ctx context.Context, path string, files int, lf *logFile, n int, follow bool, w io.Writer) error {
	var (
		f    *os.File
		size int64 = -1
		sub  *follower
		err  error
	)
	if lf != nil && follow {
		f, size, sub, err = lf.subscribe()
		if err == nil {
			defer lf.unsubscribe(sub)
		}
	} else {
		f, err = os.Open(path)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if size >= 0 {
		r = io.LimitReader(f, size)
	}
	cur, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	out, got := lastLines(cur, n)
	for i := 1; i < files && got < n; i++ {
		older, err := os.ReadFile(path + "." + strconv.Itoa(i))
		if err != nil {
			break
		}
		out, got = lastLines(append(older, out...), n)
	}
	if _, err := w.Write(out); err != nil {
		return err
	}
	if sub == nil {
		return nil
	}
	for {
		b, dropped, changed, closed := lf.take(sub)
		if dropped > 0 {
			if _, err := fmt.Fprintf(w, "[shoal: %d bytes of output skipped, reader too slow]\n", dropped); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		if closed {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readLogTail is a small helper for error messages: the last n lines of an instance log.
func readLogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	out, _ := lastLines(b, n)
	return string(bytes.TrimRight(out, "\n"))
}

func instanceLogPath(workDir string) string { return filepath.Join(workDir, "out.log") }
