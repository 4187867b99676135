package daemon

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareDataDirTightensLooseMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := prepareDataDir(dir, log); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o700 {
		t.Errorf("mode %v, want 0700", m)
	}
	line := logs.String()
	for _, want := range []string{"level=WARN", "dir=" + dir, "was=0755", "now=0700"} {
		if !strings.Contains(line, want) {
			t.Errorf("warning lacks %q: %s", want, line)
		}
	}

	// Already private: nothing to say. Missing: created private.
	logs.Reset()
	if err := prepareDataDir(dir, log); err != nil || logs.Len() != 0 {
		t.Errorf("second call: %v, logged %q", err, logs.String())
	}
	fresh := filepath.Join(t.TempDir(), "a", "b")
	if err := prepareDataDir(fresh, log); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 || logs.Len() != 0 {
		t.Errorf("new data dir: %v %v, logged %q", fi.Mode().Perm(), err, logs.String())
	}

	// A file where the directory should be is an error naming it.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if err := prepareDataDir(file, log); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("data dir that is a file: %v", err)
	}
}
