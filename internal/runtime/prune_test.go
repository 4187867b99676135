package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// instanceDirs lists the folders under <data>/instances.
func instanceDirs(t *testing.T, data string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(data, "instances"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func TestStoppedInstanceFoldersArePruned(t *testing.T) {
	data := t.TempDir()
	l := newLocal(t, Options{DataDir: data, KeepStopped: 3})
	rel := t.TempDir()
	// The oldest folder belongs to an instance that keeps running: it is
	// never removed, whatever its age.
	if _, err := l.Start(context.Background(), Spec{ID: "a-running", Dir: rel, Command: "echo up; sleep 1000"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "instances", "not an id"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		id := fmt.Sprintf("job-%d", i)
		if _, err := l.Start(context.Background(), Spec{ID: id, Dir: rel, Command: "echo output of " + id + "; exit 3"}); err != nil {
			t.Fatal(err)
		}
		if x := nextExit(t, l); x.ID != id {
			t.Fatalf("exit of %s, want %s", x.ID, id)
		}
	}
	want := []string{"a-running", "job-3", "job-4", "job-5", "not an id"}
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := instanceDirs(t, data); !slices.Equal(got, want) {
			return fmt.Errorf("instance folders %v, want %v", got, want)
		}
		return nil
	})
	// The logs of a recently ended instance are still there; older ones
	// are gone.
	if err := fileContains(instanceLogPath(l.workDir("job-5")), "output of job-5"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Logs("job-0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("logs of a pruned instance: %v, want ErrNotFound", err)
	}

	// At startup, CleanLeftovers prunes too, with the new limit.
	if err := l.Stop(context.Background(), "a-running"); err != nil {
		t.Fatal(err)
	}
	nextExit(t, l)
	// Close waits for l's exit goroutines (which prune and touch the
	// folders) so that they do not race with l2 on the same data dir.
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l2 := newLocal(t, Options{DataDir: data, KeepStopped: 1})
	if err := l2.CleanLeftovers(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := instanceDirs(t, data); !slices.Equal(got, []string{"a-running", "not an id"}) {
		t.Errorf("after CleanLeftovers with KeepStopped 1: %v, want the newest folder only", got)
	}
}

func TestKeepStoppedNegativeKeepsAll(t *testing.T) {
	data := t.TempDir()
	l := newLocal(t, Options{DataDir: data, KeepStopped: -1})
	for i := range 3 {
		if _, err := l.Start(context.Background(), Spec{ID: fmt.Sprintf("j%d", i), Dir: t.TempDir(), Command: "true"}); err != nil {
			t.Fatal(err)
		}
		nextExit(t, l)
	}
	// The wait goroutine prunes after the exit is queued; Close waits for it.
	l.Close(context.Background())
	if got := instanceDirs(t, data); len(got) != 3 {
		t.Errorf("folders %v, want all 3", got)
	}
}
