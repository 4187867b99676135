package lb

import (
	"fmt"
	"os"
	"sync"
)

// LogFile is an access log file opened for appending that can be
// reopened at its path, for log rotation: logrotate's default (create)
// mode renames the file and expects the writer to open a new one at the
// old name; until it does, lines go to the rotated file. Write and Reopen
// are safe for concurrent use; a line is written whole to one file or the
// other.
type LogFile struct {
	path string
	mu   sync.RWMutex // write-held only to swap f
	f    *os.File
}

// OpenLogFile opens (creating, mode 0640) path for appending.
func OpenLogFile(path string) (*LogFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &LogFile{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	return f, nil
}

// Path returns the path the file was opened at.
func (l *LogFile) Path() string { return l.path }

// Write appends p to the current file.
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.f.Write(p)
}

// Reopen opens the path again (creating the file if it was moved away)
// and writes there from now on; the previous file is closed. On error the
// previous file stays in use.
func (l *LogFile) Reopen() error {
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the current file.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
