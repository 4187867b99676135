package lb

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestLogFileReopen: after the file is moved away (logrotate, create
// mode), Reopen makes the next lines land in a new file at the path, and
// no line is lost or split while writers run.
func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	var wg sync.WaitGroup
	const writers, lines = 4, 200
	for range writers {
		wg.Go(func() {
			for range lines {
				lf.Write([]byte("line\n"))
			}
		})
	}
	rotated := filepath.Join(dir, "access.log.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := lf.Reopen(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	lf.Write([]byte("after\n"))
	a, _ := os.ReadFile(rotated)
	b, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(b), "after\n") {
		t.Fatalf("new file at the path ends %q, want the line written after Reopen", b)
	}
	all := string(a) + string(b)
	if n := strings.Count(all, "line\n"); n != writers*lines || len(all) != writers*lines*5+6 {
		t.Fatalf("%d whole lines in %d bytes, want %d", n, len(all), writers*lines)
	}
}
