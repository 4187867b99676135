package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"runtime/debug"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// ErrDamaged means the store file cannot be trusted: it is empty, truncated,
// corrupted, or not a Shoal store. Errors that wrap it are *DamagedError
// values naming the file and how to recover.
var ErrDamaged = errors.New("store damaged")

// DamagedError reports a store file that cannot be read safely. It names
// the file and the way back: restoring the automatic backup (or another one
// made with `shoal backup`), or moving the file away to start afresh.
type DamagedError struct {
	// Path is the store file.
	Path string
	// Backup is the automatic backup kept beside it (Path + ".bak"); empty
	// when the file was checked as a backup itself (Verify).
	Backup string
	// Err says what is wrong.
	Err error
}

// Error names the file, the problem and the commands that recover.
func (e *DamagedError) Error() string {
	if e.Backup == "" { // a file checked as a backup: no way back to offer
		return fmt.Sprintf("%s is damaged or not a Shoal store: %v", e.Path, e.Err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "store %s is damaged or not a Shoal store: %v; nothing was changed. To recover, stop shoal up and ", e.Path, e.Err)
	if fi, err := os.Stat(e.Backup); err == nil && fi.Mode().IsRegular() {
		fmt.Fprintf(&b, "run `shoal restore %s` (the automatic backup of the last release change)", e.Backup)
	} else {
		b.WriteString("run `shoal restore FILE` with a backup made by `shoal backup`")
	}
	fmt.Fprintf(&b, ", or move %s away to start afresh (its releases, env overrides and secrets are then lost)", e.Path)
	return b.String()
}

// Unwrap returns the problem found.
func (e *DamagedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// damaged returns err as a *DamagedError for the store at path, unless it is
// one already.
func damaged(path string, err error) error {
	var de *DamagedError
	if errors.As(err, &de) {
		return err
	}
	return &DamagedError{Path: path, Backup: path + backupSuffix, Err: err}
}

// errCorrupt marks an error found in the file's content (a page bbolt
// panicked on, a record that does not decode).
var errCorrupt = errors.New("corrupt data")

// boltDB is the bbolt handle of a Store. Its View and Update shadow bbolt's:
// bbolt panics, or faults on its memory map, on some damaged pages; those
// are recovered here and returned as a *DamagedError naming the file, so a
// damaged store never ends the process with a panic trace. Update also
// refreshes the automatic backup after a commit (see Store.autoBackup).
type boltDB struct {
	*bolt.DB
	path     string
	onCommit func()
	// skippedCheck says why Open skipped bbolt's consistency check.
	skippedCheck error
}

// View runs fn in a read-only transaction (see bolt.DB.View).
func (db *boltDB) View(fn func(*bolt.Tx) error) error {
	return db.guard(func() error { return db.DB.View(fn) })
}

// errUnchanged is returned by an Update's fn that found nothing to change:
// the transaction is rolled back (no write, no sync), no backup is made,
// and Update returns nil.
var errUnchanged = errors.New("nothing to change")

// Update runs fn in a read-write transaction (see bolt.DB.Update) and, once
// it committed, refreshes the automatic backup. An fn that returns
// errUnchanged commits nothing and makes no backup.
func (db *boltDB) Update(fn func(*bolt.Tx) error) error {
	if err := db.updateNoBackup(fn); errors.Is(err, errUnchanged) {
		return nil
	} else if err != nil {
		return err
	}
	if db.onCommit != nil {
		db.onCommit()
	}
	return nil
}

// updateNoBackup is Update without the backup, for frequent writes that a
// restore does not need (events, rollout snapshots).
func (db *boltDB) updateNoBackup(fn func(*bolt.Tx) error) error {
	return db.guard(func() error { return db.DB.Update(fn) })
}

// guard runs fn, turning a panic (or a memory fault, which SetPanicOnFault
// makes a panic) into a *DamagedError, and marking record decoding errors
// as damage too. bbolt rolls the transaction back in its own deferred
// function before the panic reaches us, so its locks are released.
func (db *boltDB) guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = damaged(db.path, fmt.Errorf("%w: reading the file failed (%v)", errCorrupt, p))
		}
	}()
	err = fn()
	if errors.Is(err, errCorrupt) {
		err = damaged(db.path, err)
	}
	return err
}

// checkAll reads every bucket, key and value of the store, decodes every
// record it knows, and then runs bbolt's own consistency check (free pages
// against reachable ones), which catches a freelist that would let the next
// write overwrite live data. It runs under guard, so a page bbolt panics on
// is reported, not fatal. bbolt's check runs in its own goroutine, where a
// panic could not be recovered, so it runs only after the walk touched every
// reachable page without trouble and the pages it touches besides (both meta
// pages, the freelist) were found sound by metaPagesSound; a torn meta page
// (bbolt falls back on the other one) only skips that check, a freelist page
// that is not one is damage.
func checkAll(db *boltDB) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		if err := walkRecords(tx); err != nil {
			return fmt.Errorf("%w: %w", errCorrupt, err)
		}
		skip, err := metaPagesSound(db.path, db.Info().PageSize)
		if err != nil {
			return fmt.Errorf("%w: %w", errCorrupt, err)
		}
		if skip != nil {
			db.skippedCheck = skip
			return nil
		}
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 5 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: consistency check: %w", errCorrupt, errors.Join(errs...))
		}
		return nil
	}
}

// The parts of bbolt's file format (version 2) that metaPagesSound reads: a
// page starts with its id (8 bytes) and flags (2 bytes); a meta page's meta
// follows its 16-byte header: magic, version, page size, flags (4 bytes
// each), root bucket (16), freelist page id (8), high water mark (8), txid
// (8), then an FNV-64a checksum of the 56 bytes before it.
const (
	boltMagic        = 0xED0CDAED
	boltMetaFlag     = 0x04
	boltFreelistFlag = 0x10
	boltNoFreelist   = ^uint64(0)
)

// metaPagesSound reads the file's two meta pages and the freelist page of
// the newest valid meta from disk, and checks the page ids and types that
// bbolt's Tx.Check asserts (with a panic) before it looks at anything else.
// A torn meta page (bbolt falls back on the other) gives skip: Check cannot
// run, but nothing is wrong with the data. A freelist page that is not one
// is damage: bbolt would hand out pages that hold live data.
func metaPagesSound(path string, pageSize int) (skip, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	page := make([]byte, 16+64)
	read := func(id uint64) ([]byte, error) {
		if _, err := f.ReadAt(page, int64(id)*int64(pageSize)); err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		if got := binary.LittleEndian.Uint64(page); got != id {
			return nil, fmt.Errorf("page %d identifies as %d", id, got)
		}
		return page, nil
	}
	var freelist, txid uint64
	found := false
	for id := uint64(0); id < 2; id++ {
		p, err := read(id)
		if err == nil {
			if flags := binary.LittleEndian.Uint16(p[8:]); flags != boltMetaFlag {
				err = fmt.Errorf("page %d is not a meta page (flags %#x)", id, flags)
			}
		}
		if err == nil {
			m := p[16:]
			h := fnv.New64a()
			h.Write(m[:56])
			if binary.LittleEndian.Uint32(m) != boltMagic || binary.LittleEndian.Uint64(m[56:]) != h.Sum64() {
				err = fmt.Errorf("meta page %d is invalid", id)
			} else if t := binary.LittleEndian.Uint64(m[48:]); !found || t > txid {
				found, txid, freelist = true, t, binary.LittleEndian.Uint64(m[32:])
			}
		}
		if err != nil {
			skip = err
		}
	}
	if !found {
		return nil, errors.New("no valid meta page")
	}
	if freelist == boltNoFreelist {
		return skip, nil
	}
	p, err := read(freelist)
	if err != nil {
		return nil, fmt.Errorf("freelist: %w", err)
	}
	if flags := binary.LittleEndian.Uint16(p[8:]); flags != boltFreelistFlag {
		return nil, fmt.Errorf("page %d is not a freelist page (flags %#x)", freelist, flags)
	}
	return skip, nil
}

// walkRecords decodes every record of the buckets of this schema.
func walkRecords(tx *bolt.Tx) error {
	check := func(name []byte, each func(k, v []byte) error) error {
		b := tx.Bucket(name)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if err := each(k, v); err != nil {
				return fmt.Errorf("bucket %s, key %q: %w", name, k, err)
			}
			return nil
		})
	}
	decodeJSON := func(_, v []byte) error {
		if !json.Valid(v) {
			return errors.New("invalid JSON record")
		}
		return nil
	}
	if err := check(bucketGroups, func(_, v []byte) error { _, err := decodeGroup(v); return err }); err != nil {
		return err
	}
	if err := check(bucketEvents, func(_, v []byte) error { _, _, err := decodeEvent(v); return err }); err != nil {
		return err
	}
	if err := check(bucketEnv, decodeJSON); err != nil {
		return err
	}
	if err := check(bucketRollouts, decodeJSON); err != nil {
		return err
	}
	if err := check(bucketTokens, func(k, v []byte) error { _, err := decodeToken(k, v); return err }); err != nil {
		return err
	}
	if err := check(bucketHosts, func(k, v []byte) error { _, err := decodeHost(k, v); return err }); err != nil {
		return err
	}
	if err := check(bucketMembers, func(k, v []byte) error { _, err := decodeMember(k, v); return err }); err != nil {
		return err
	}
	if err := check(bucketKeys, func(_, _ []byte) error { return nil }); err != nil {
		return err
	}
	rels := tx.Bucket(bucketReleases)
	if rels == nil {
		return nil
	}
	return rels.ForEachBucket(func(app []byte) error {
		b := rels.Bucket(app)
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("bucket releases/%s, key %q: unexpected nested bucket", app, k)
			}
			if _, err := decodeRelease(v); err != nil {
				return fmt.Errorf("bucket releases/%s, key %q: %w", app, k, err)
			}
			return nil
		})
	})
}
