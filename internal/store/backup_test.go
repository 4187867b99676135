package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestAutoBackupAndRestore: every change of desired state leaves a
// verified backup beside the store; a damaged store names it, and Restore
// brings the data back, keeping the damaged file aside.
func TestAutoBackupAndRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "shoal.db")
	fill(t, path)
	s := open(t, path, Options{})
	want, err := dump(s)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	bak := BackupPath(path)
	fi, err := os.Stat(bak)
	if err != nil {
		t.Fatalf("no automatic backup: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, want 0600", fi.Mode().Perm())
	}
	sum, err := Verify(bak)
	if err != nil {
		t.Fatalf("verify backup: %v", err)
	}
	if sum.Apps["web"] != 30 || sum.Releases != 30 {
		t.Errorf("backup summary %+v, want web at v30 with 30 releases", sum)
	}

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{})
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "shoal restore "+bak) {
		t.Fatalf("Open of the emptied store = %v, want it to name `shoal restore %s`", err, bak)
	}
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	aside, err := Restore(path, bak, now)
	if err != nil {
		t.Fatal(err)
	}
	if aside != path+".damaged-20261202T060000Z" {
		t.Errorf("damaged file kept as %q", aside)
	}
	if fi, err := os.Stat(aside); err != nil || fi.Size() != 0 {
		t.Errorf("damaged file not kept aside as it was: %v %v", fi, err)
	}
	s = open(t, path, Options{})
	got, err := dump(s)
	if err != nil {
		t.Fatal(err)
	}
	// The backup was written after the last change of a release or env;
	// the events appended after it are not in it.
	if !strings.HasPrefix(want, strings.SplitN(got, "event ", 2)[0]) {
		t.Fatalf("restored store differs:\n%.400s\nwant\n%.400s", got, want)
	}
}

func TestRestoreRefusedWhileOpenAndForDamagedBackup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shoal.db")
	fill(t, path)
	s := open(t, path, Options{})

	if _, err := Restore(path, BackupPath(path), time.Now()); !errors.Is(err, ErrInUse) {
		t.Fatalf("Restore while open = %v, want ErrInUse", err)
	}
	// A backup taken while the store is held copies the automatic backup.
	dst := filepath.Join(dir, "copy.db")
	fromKept, err := Backup(path, dst)
	if err != nil || !fromKept {
		t.Fatalf("Backup while open = %v, %v; want the kept backup copied", fromKept, err)
	}
	if _, err := Verify(dst); err != nil {
		t.Fatal(err)
	}
	s.Close()

	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, []byte(strings.Repeat("garbage", 3000)), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if _, err := Restore(path, bad, time.Now()); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Restore from garbage = %v, want a damaged-store error naming it", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("a refused restore changed the store")
	}
	// Closed: Backup reads the store itself.
	dst2 := filepath.Join(dir, "copy2.db")
	if fromKept, err := Backup(path, dst2); err != nil || fromKept {
		t.Fatalf("Backup of a closed store = %v, %v", fromKept, err)
	}
	if _, err := Backup(path, dst2); err == nil {
		t.Fatal("Backup over an existing file succeeded")
	}
}

// TestMissingStoreKeepsOldBackup: starting afresh (the store file moved
// away) must not let the new store's first backup overwrite the old one.
func TestMissingStoreKeepsOldBackup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shoal.db")
	fill(t, path)
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	s := open(t, path, Options{Now: func() time.Time { return now }})
	if err := s.PutGroup(api.Group{App: "web", Min: 0, Max: 1, Desired: 0}); err != nil {
		t.Fatal(err)
	}
	sum, err := Verify(BackupPath(path) + "-before-20261202T060000Z")
	if err != nil || sum.Releases != 30 {
		t.Fatalf("old backup not kept: %+v %v", sum, err)
	}
}

// TestRestoreIntoNewDataDir: a backup restores where no store (nor data
// directory) exists yet, as on a new server.
func TestRestoreIntoNewDataDir(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "old", "shoal.db")
	fill(t, src)
	path := filepath.Join(dir, "new", "data", "shoal.db")
	aside, err := Restore(path, BackupPath(src), time.Now())
	if err != nil || aside != "" {
		t.Fatalf("Restore = %q, %v", aside, err)
	}
	s := open(t, path, Options{})
	if rels, err := s.Releases("web"); err != nil || len(rels) != 30 {
		t.Fatalf("%d releases, %v", len(rels), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Restored again over that sound store: it is kept as replaced, not
	// as damaged.
	now := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	aside, err = Restore(path, BackupPath(src), now)
	if err != nil || aside != path+".replaced-20261202T070000Z" {
		t.Fatalf("Restore over a sound store = %q, %v; want it kept as %s.replaced-20261202T070000Z", aside, err, path)
	}
	if _, err := Verify(aside); err != nil {
		t.Errorf("the replaced store kept aside: %v", err)
	}
}

// TestConcurrentChangesShareABackup: changes committed while a backup
// runs wait for one backup that begins after it, together, instead of one
// full copy of the store each; and each returns with its change in the
// file.
func TestConcurrentChangesShareABackup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shoal.db")
	s := open(t, path, Options{})
	if err := s.PutGroup(api.Group{App: "web", Min: 0, Max: 9, Desired: 1}); err != nil {
		t.Fatal(err)
	}
	autoState := func() (started, finished uint64, running bool, waiting int) {
		s.auto.mu.Lock()
		defer s.auto.mu.Unlock()
		return s.auto.started, s.auto.finished, s.auto.running, s.auto.waiting
	}
	first, _, _, _ := autoState()
	eventually := func(what string, cond func() bool) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() error {
			if !cond() {
				st, fin, run, w := autoState()
				return fmt.Errorf("%s: started %d, finished %d, running %v, waiting %d", what, st, fin, run, w)
			}
			return nil
		})
	}

	s.backupMu.Lock() // holds the next backup in WriteBackup
	errs := make(chan error, 11)
	go func() {
		_, err := s.PutRelease(api.Release{App: "web", Digest: "sha256:first"})
		errs <- err
	}()
	eventually("a backup runs", func() bool { st, _, run, _ := autoState(); return run && st == first+1 })
	for range 10 {
		go func() {
			_, err := s.PutRelease(api.Release{App: "web", Digest: "sha256:x"})
			errs <- err
		}()
	}
	eventually("11 changes wait for a backup", func() bool { _, _, _, w := autoState(); return w == 11 })
	s.backupMu.Unlock()
	for range 11 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st, fin, run, w := autoState(); st != first+2 || fin != st || run || w != 0 {
		t.Fatalf("after 11 changes: %d backups started, %d finished, running %v, %d waiting; want 2 more, all done", st-first, fin-first, run, w)
	}
	sum, err := Verify(BackupPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Releases != 11 {
		t.Fatalf("the backup holds %d releases, want the 11 made", sum.Releases)
	}
}
