package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// ErrStaleTerm is returned (wrapped in a *StaleTermError) for a request that
// carries an older term than the agent has seen.
var ErrStaleTerm = errors.New("stale term")

// StaleTermError is a mutating request refused because a newer leader has
// spoken to this agent since.
type StaleTermError struct {
	Got     uint64 // the request's term
	Current uint64 // the highest term the agent has recorded
}

// Error names both terms.
func (e *StaleTermError) Error() string {
	return fmt.Sprintf("term %d is older than term %d, which this agent has already seen: a newer leader drives this host", e.Got, e.Current)
}

// Unwrap returns ErrStaleTerm.
func (e *StaleTermError) Unwrap() error { return ErrStaleTerm }

// fence holds the highest leader term seen, persisted in one small file
// ("<term>\n") so that it survives a restart of the agent: a leader deposed
// while the agent restarted is still refused.
type fence struct {
	path string

	mu   sync.Mutex // held across the file write, so terms are recorded in order
	term uint64
}

// openFence reads the term file at path; a missing file is term 0 (a first
// start). A file that does not hold one decimal term is an error naming it:
// resetting the fence would let a deposed leader act again.
func openFence(path string) (*fence, error) {
	f := &fence{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read term file: %w", err)
	}
	s, ok := strings.CutSuffix(string(b), "\n")
	t, perr := strconv.ParseUint(s, 10, 64)
	if !ok || perr != nil {
		return nil, fmt.Errorf("term file %s is damaged (%q is not a decimal term and a newline): "+
			"restore it or remove it only if no older leader can reach this agent", path, truncate(string(b), 40))
	}
	f.term = t
	return f, nil
}

// current returns the highest term recorded.
func (f *fence) current() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.term
}

// admit accepts term when it is not older than the recorded one; a newer term
// is written to disk (atomically, fsynced) before admit returns, so the agent
// never acts for a term it could forget. An older term is a *StaleTermError.
func (f *fence) admit(term uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if term < f.term {
		return &StaleTermError{Got: term, Current: f.term}
	}
	if term == f.term {
		return nil
	}
	if err := atomicfile.Write(f.path, []byte(strconv.FormatUint(term, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("record term %d: %w", term, err)
	}
	f.term = term
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
