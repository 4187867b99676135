package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// backupSuffix names the automatic backup kept beside the store file.
const backupSuffix = ".bak"

// BackupPath returns where the automatic backup of the store at path is
// kept: path + ".bak".
func BackupPath(path string) string { return path + backupSuffix }

// autoBackup refreshes the automatic backup after a committed change of
// desired state (releases, the group, env overrides, host records).
// Events, rollout snapshots and generated keys do not trigger it (a new
// key is in the next backup): they change often, or, for keys, are fetched
// at every start. The store has already committed the change, so a failed
// backup does not undo it; the failure is logged as an error (an operator
// must act: the disk is likely full) and the previous backup stays as it
// was.
//
// It returns once a backup that began after it was called has ended, so
// the change is in the file. Concurrent calls share such a backup: each
// copies the whole store, and a thousand hosts saying hello, or declared
// lost, at once would otherwise write a thousand copies one after another.
func (s *Store) autoBackup() {
	a := &s.auto
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		a.done = sync.NewCond(&a.mu)
	}
	want := a.started + 1 // the first backup to begin after this call
	a.waiting++
	defer func() { a.waiting-- }()
	for a.finished < want {
		if a.running {
			a.done.Wait()
			continue
		}
		a.running = true
		a.started++
		n := a.started
		a.mu.Unlock()
		err := s.WriteBackup(s.backupPath)
		a.mu.Lock()
		if err != nil {
			s.log.Error("automatic store backup failed; the previous backup is kept", "file", s.backupPath, "error", err)
		}
		a.running, a.finished = false, n
		a.done.Broadcast()
	}
}

// autoBackups numbers the automatic backups: started have begun, the
// first finished have ended; at most one runs.
type autoBackups struct {
	mu                sync.Mutex
	done              *sync.Cond // broadcast when a backup ends
	started, finished uint64
	running           bool
	waiting           int // calls of autoBackup not yet returned (for tests)
}

// WriteBackup writes a consistent copy of the store (one read transaction)
// to path, atomically and durably: a temp file in the same directory,
// fsync, mode 0600, rename, fsync of the directory. Concurrent calls are
// serialised, and each copies the state as of its own start, so the file
// left is never older than the last change committed before the call.
func (s *Store) WriteBackup(path string) error {
	s.backupMu.Lock()
	defer s.backupMu.Unlock()
	return writeAtomic(path, func(w io.Writer) error {
		return s.db.View(func(tx *bolt.Tx) error {
			_, err := tx.WriteTo(w)
			return err
		})
	})
}

// writeAtomic makes path hold what write writes, or leaves it as it was.
func writeAtomic(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	err = write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = atomicfile.SyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Summary describes a store file that passed Verify.
type Summary struct {
	// Schema is the file's schema version.
	Schema int
	// Apps maps each app with a group to its current release (0: none).
	Apps map[string]int
	// Releases counts the stored releases of every app.
	Releases int
	// LastEvent is the sequence number of the newest event.
	LastEvent uint64
}

// Verify checks that the file at path is a complete Shoal store this
// Shoal can read, without changing it: it opens it read-only, reads every
// page, decodes every record, runs bbolt's consistency check, and checks the
// schema version. A damaged file gives a *DamagedError. Verify waits up to
// DefaultTimeout for a process that holds the file (ErrInUse).
func Verify(path string) (Summary, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Summary{}, fmt.Errorf("verify %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return Summary{}, &DamagedError{Path: path, Err: errors.New("empty, or not a regular file")}
	}
	db, err := openBolt(path, &bolt.Options{ReadOnly: true, Timeout: DefaultTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return Summary{}, fmt.Errorf("verify %s: %w", path, ErrInUse)
	}
	if err != nil {
		return Summary{}, &DamagedError{Path: path, Err: err}
	}
	defer db.Close()
	bdb := &boltDB{DB: db, path: path}
	var sum Summary
	err = bdb.View(func(tx *bolt.Tx) error {
		if err := checkAll(bdb)(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("%w: no schema version", ErrSchema)
		}
		if err := initSchemaCheck(meta.Get(keySchema)); err != nil {
			return err
		}
		sum.Schema = SchemaVersion
		sum.Apps = map[string]int{}
		if b := tx.Bucket(bucketGroups); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				g, err := decodeGroup(v)
				sum.Apps[g.App] = g.Release
				return err
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketReleases); b != nil {
			if err := b.ForEachBucket(func(app []byte) error {
				sum.Releases += b.Bucket(app).Stats().KeyN
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketEvents); b != nil {
			sum.LastEvent = b.Sequence()
		}
		return nil
	})
	if err != nil {
		var de *DamagedError
		if errors.As(err, &de) {
			de.Backup = "" // a backup's own backup is not a way back
			return Summary{}, de
		}
		return Summary{}, &DamagedError{Path: path, Err: err}
	}
	return sum, nil
}

// parseSchema reads a stored schema version.
func parseSchema(v []byte) (int, error) {
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, fmt.Errorf("%w: unreadable schema version %q", ErrSchema, v)
	}
	if n < 1 {
		return 0, fmt.Errorf("%w: invalid schema version %d", ErrSchema, n)
	}
	return n, nil
}

// initSchemaCheck checks a schema version value as Open does.
func initSchemaCheck(v []byte) error {
	n, err := parseSchema(v)
	if err != nil {
		return err
	}
	if n > SchemaVersion {
		return fmt.Errorf("%w: %w: schema %d, written by a newer Shoal; this Shoal reads schema %d", ErrSchema, errNewer, n, SchemaVersion)
	}
	return nil
}

// Backup writes a consistent, verified copy of the store file at path to
// dst (atomically, mode 0600) while no process has the store open. If a
// running shoal holds the store, the store cannot be read from here: the
// automatic backup it keeps (BackupPath) is verified and copied instead,
// and fromKept is true. dst must not exist.
func Backup(path, dst string) (fromKept bool, err error) {
	if _, err := os.Lstat(dst); err == nil {
		return false, fmt.Errorf("backup: %s exists; choose another file", dst)
	}
	src := path
	if held, err := locked(path); err != nil {
		return false, fmt.Errorf("backup: %w", err)
	} else if held {
		src, fromKept = BackupPath(path), true
	}
	if _, err := Verify(src); err != nil {
		return false, fmt.Errorf("backup: %w", err)
	}
	if err := copyFile(src, dst); err != nil {
		return false, fmt.Errorf("backup: %w", err)
	}
	return fromKept, nil
}

// Restore replaces the store file at path with a copy of the backup from,
// after checking that no process has the store open (ErrInUse) and that
// from is a complete Shoal store (Verify). The file it replaces is kept
// beside it and its name returned (empty when there was none): as path +
// ".replaced-<UTC time>" when it is a sound store itself (Verify), as
// path + ".damaged-<UTC time>" when it is not. The swap is two renames in the store's directory,
// each made durable, and happens while this process holds the store's lock.
func Restore(path, from string, now time.Time) (aside string, err error) {
	if _, err := Verify(from); err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	kind := "damaged"
	if _, err := os.Lstat(path); err == nil {
		// Checked before the lock is taken (Verify takes a shared one); a
		// process that opens the store in between makes lockFile fail.
		_, verr := Verify(path)
		if errors.Is(verr, ErrInUse) {
			// lockFile's refusal names the holder and says what to do.
			unlock, err := lockFile(path)
			if err != nil {
				return "", fmt.Errorf("restore: %w", err)
			}
			unlock() // the holder ended meanwhile: the caller may try again
			return "", fmt.Errorf("restore: %w", verr)
		}
		if verr == nil {
			kind = "replaced"
		}
	}
	unlock, err := lockFile(path)
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	defer unlock()
	tmp := path + ".restore"
	if err := copyFile(from, tmp); err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp) // no-op after the rename
	if _, err := os.Lstat(path); err == nil {
		aside = path + "." + kind + "-" + now.UTC().Format("20060102T150405Z")
		if err := os.Rename(path, aside); err != nil {
			return "", fmt.Errorf("restore: keep the current file aside: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return aside, fmt.Errorf("restore: %w (the previous file is at %s)", err, aside)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return aside, fmt.Errorf("restore: %w", err)
	}
	return aside, nil
}

// copyFile copies src to a new file dst, atomically and durably, mode 0600.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeAtomic(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// locked reports whether a process holds the store file at path open (bbolt
// holds an exclusive flock on it while open). A missing file is not locked.
func locked(path string) (bool, error) {
	unlock, err := lockFile(path)
	if errors.Is(err, ErrInUse) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	unlock()
	return false, nil
}

// lockFile takes the exclusive flock bbolt takes on an open store, without
// waiting: ErrInUse (with the holder's pid when known) if a shoal has the
// store open. A missing file needs no lock.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid := readPid(path + ".pid"); pid > 0 {
				return nil, fmt.Errorf("%w (pid %d): stop shoal up first", ErrInUse, pid)
			}
			return nil, fmt.Errorf("%w: stop shoal up first", ErrInUse)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
