// Package store owns the controller's durable desired state: each app's
// group (current release, min, max, desired count), its numbered releases,
// a bounded log of events, and a few generated keys. Observed state
// (instances, health, metrics) is never stored here: it is observed again
// after a restart.
//
// The store is one bbolt file, written only in bbolt transactions, so every
// write is atomic and durable (fsync on commit) and a crash leaves the last
// committed state. Its schema version sits in bucket "meta", key "schema";
// Open refuses a file written by a newer Shoal. Values are JSON records
// whose types (record*.go) are separate from the in-memory types.
//
// Damage (damage.go). Open refuses an empty, truncated, corrupted or
// foreign file with a *DamagedError naming the file and the way back; it
// reads every page and record first. bbolt panics on some damaged pages:
// those panics, at open and in every transaction, come back as errors.
// Every committed change of desired state rewrites a consistent backup
// beside the file (backup.go: BackupPath); Verify, Backup and Restore serve
// `shoal backup` and `shoal restore`.
//
// Secrets. Releases hold the complete instance environment, secret values
// included, because the controller needs them to start instances after a
// restart. The file is created with mode 0600 inside the data directory;
// nothing in this package prints or logs a value.
//
// A Store is safe for concurrent use by many goroutines: bbolt serialises
// writers and lets readers run in parallel. Only one process may open a
// store at a time; a second Open of the same file fails after
// Options.Timeout with ErrInUse.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the version of the on-disk layout this code reads and
// writes.
const SchemaVersion = 1

// Defaults of Options.
const (
	DefaultTimeout   = time.Second
	DefaultMaxEvents = 10000
)

// Sentinel errors, returned wrapped.
var (
	// ErrInUse means another process (normally another shoal) holds the
	// store file open.
	ErrInUse = errors.New("data dir in use by another shoal")
	// ErrSchema means the file was written with a schema this Shoal does
	// not know (a newer Shoal, or not a Shoal store).
	ErrSchema = errors.New("unsupported store schema")
	// ErrNotFound means the group or release does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid means the argument breaks the store's rules (an empty app
	// name, a desired count outside [min, max]).
	ErrInvalid = errors.New("invalid")
)

// Bucket and key names of schema 1:
//
//	meta                  schema -> "1"
//	groups                <app> -> groupRecord (JSON)
//	releases/<app>        <version, 8-byte big endian> -> releaseRecord
//	                      (the nested bucket's sequence is the last version)
//	events                <seq, 8-byte big endian> -> eventRecord
//	keys                  <name> -> random bytes (see Key)
var (
	bucketMeta     = []byte("meta")
	bucketGroups   = []byte("groups")
	bucketReleases = []byte("releases")
	bucketEvents   = []byte("events")
	bucketKeys     = []byte("keys")
	keySchema      = []byte("schema")
)

// Options configures Open. The zero value is valid.
type Options struct {
	// Timeout is how long Open waits for another process to release the
	// file before it fails with ErrInUse; default 1s.
	Timeout time.Duration
	// MaxEvents is how many events are kept; older ones are deleted as new
	// ones are appended. Default 10000.
	MaxEvents int
	// Now replaces time.Now for the timestamps the store sets; nil means
	// time.Now.
	Now func() time.Time
	// Logger receives notices (a file mode fixed at open); nil discards.
	Logger *slog.Logger
}

// Store is an open store. See the package documentation for its guarantees.
type Store struct {
	db         *boltDB
	path       string
	backupPath string
	opts       Options
	log        *slog.Logger
	pidFile    string

	backupMu sync.Mutex // serialises writes of the automatic backup
	auto     autoBackups

	// applyMu serialises Apply; applyAt, while one runs, is the clock
	// (the command's time).
	applyMu sync.Mutex
	applyAt atomic.Pointer[time.Time]
}

// Open opens the store file at path, creating it (and its directory, mode
// 0700) if needed, with mode 0600. A file that does not exist is a first
// start. A file that exists but cannot be trusted (empty, truncated,
// corrupted: every page is read and every record decoded; or not a Shoal
// store) is refused with a *DamagedError (errors.Is ErrDamaged) naming the
// file and how to recover; nothing is written to it. A store of a newer
// schema is refused with ErrSchema. If another process has the file open,
// Open waits up to Options.Timeout and then fails with ErrInUse, naming the
// other process's pid when known.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = DefaultMaxEvents
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	fresh := false
	switch fi, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist):
		fresh = true
		// The first change of the new store would overwrite the backup
		// of the old one: keep that aside.
		if _, err := os.Stat(path + backupSuffix); err == nil {
			kept := path + backupSuffix + "-before-" + opts.Now().UTC().Format("20060102T150405Z")
			if err := os.Rename(path+backupSuffix, kept); err != nil {
				return nil, fmt.Errorf("open store: keep the old backup: %w", err)
			}
			log.Warn("store file missing: starting a new store; the backup of the old one is kept", "file", path, "backup", kept)
		}
	case err != nil:
		return nil, fmt.Errorf("open store: %w", err)
	case !fi.Mode().IsRegular():
		return nil, damaged(path, errors.New("not a regular file"))
	case fi.Size() == 0:
		// bbolt would quietly make an empty file a new store: everything
		// the file held (releases, overrides, secrets) would be gone.
		return nil, damaged(path, errors.New("the file is empty (0 bytes)"))
	}
	pidFile := path + ".pid"
	db, err := openBolt(path, &bolt.Options{Timeout: opts.Timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		if pid := readPid(pidFile); pid > 0 {
			return nil, fmt.Errorf("open store %s: %w (pid %d)", path, ErrInUse, pid)
		}
		return nil, fmt.Errorf("open store %s: %w", path, ErrInUse)
	}
	if err != nil {
		if !fresh && !errors.Is(err, fs.ErrPermission) {
			return nil, damaged(path, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: &boltDB{DB: db, path: path}, path: path, backupPath: path + backupSuffix, opts: opts, log: log, pidFile: pidFile}
	s.db.onCommit = s.autoBackup
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(path, 0o600); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store: %w", err)
		}
		log.Warn("store file mode tightened to 0600", "file", path, "was", fi.Mode().Perm().String())
	}
	if err := s.db.View(checkAll(s.db)); err != nil {
		db.Close()
		return nil, damaged(path, err)
	}
	if s.db.skippedCheck != nil {
		log.Warn("store consistency check skipped: a meta page is torn (bbolt uses the other one); every record was read", "file", path, "error", s.db.skippedCheck)
	}
	if err := s.db.updateNoBackup(initSchema); err != nil {
		db.Close()
		if errors.Is(err, ErrSchema) && !errors.Is(err, errNewer) {
			return nil, damaged(path, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Best effort: only used to name the holder in another process's error.
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	return s, nil
}

// openBolt is bolt.Open with its panics (bbolt panics on some damaged meta
// and freelist pages) and memory faults returned as errors. After a panic
// the file descriptor bbolt opened cannot be closed; the caller is about to
// report the file damaged.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("%w: opening the file failed (%v)", errCorrupt, p)
		}
	}()
	return bolt.Open(path, 0o600, o)
}

// errNewer marks a schema newer than this Shoal's: not damage.
var errNewer = errors.New("newer schema")

// initSchema creates the buckets of a new store, or checks an existing
// store's schema version. A file with no bucket at all is new (bbolt made
// it, or a first start stopped before its first commit); a file with
// buckets but no schema version is not a Shoal store.
func initSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		var names []string
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
		if len(names) > 0 {
			return fmt.Errorf("%w: the file has data (buckets %s) but no schema version", ErrSchema, strings.Join(names, ", "))
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
			return err
		}
	}
	v, err := parseSchema(meta.Get(keySchema))
	if err != nil {
		return err
	}
	if v > SchemaVersion {
		return fmt.Errorf("%w: %w: the store has schema %d, written by a newer Shoal; this Shoal reads schema %d (upgrade Shoal, or use another data_dir)", ErrSchema, errNewer, v, SchemaVersion)
	}
	for _, b := range [][]byte{bucketGroups, bucketReleases, bucketEvents, bucketKeys} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// Path returns the store file's path.
func (s *Store) Path() string { return s.path }

// Close closes the store. Calls made after Close fail. Close waits for
// transactions in progress.
func (s *Store) Close() error {
	if readPid(s.pidFile) == os.Getpid() {
		os.Remove(s.pidFile)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

func (s *Store) now() time.Time {
	if at := s.applyAt.Load(); at != nil {
		return *at
	}
	return s.opts.Now().UTC()
}

func checkApp(app string) error {
	if app == "" {
		return fmt.Errorf("%w: empty app name", ErrInvalid)
	}
	return nil
}
