package store

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogKeysNameFilesAsFile: the store names its file under "file", as
// every other part names a file on disk ("path" is a request's path).
func TestLogKeysNameFilesAsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err = Open(path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := logs.String(); !strings.Contains(got, "file="+path) || strings.Contains(got, " path=") {
		t.Errorf("the mode warning does not name the file as file=%s:\n%s", path, got)
	}
}
