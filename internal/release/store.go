package release

import (
	"archive/tar"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// Store keeps artifacts under one root directory (see the package doc for the layout).
// All methods are safe for concurrent use by goroutines of one process; two processes
// must not share a root. A Store holds no open files, so it needs no Close.
type Store struct {
	root   string
	logger *slog.Logger
	limits Limits

	indexMu sync.Mutex // guards index.json read-modify-write
	buildMu sync.Mutex // serialises BuildOnce, so one key is never built twice at once
}

// Open returns the store rooted at dir, creating its directories, and removes temp files
// left by a previous process that died mid-write. logger may be nil (discard).
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{root: abs, logger: logger}
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return nil, fmt.Errorf("open store: clear tmp: %w", err)
	}
	for _, d := range []string{s.artifactDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	return s, nil
}

// SetLimits sets what one artifact may unpack to (and a build may pack); zero fields
// keep the defaults. Call it before any other method.
func (s *Store) SetLimits(l Limits) { s.limits = l.withDefaults() }

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func (s *Store) artifactDir() string { return filepath.Join(s.root, "artifacts") }
func (s *Store) tmpDir() string      { return filepath.Join(s.root, "tmp") }

// Path returns where the artifact with digest d is (or would be) stored.
func (s *Store) Path(d string) string { return filepath.Join(s.artifactDir(), fileName(d)) }

// Has reports whether the artifact with digest d is stored. An invalid digest is never
// stored.
func (s *Store) Has(d string) bool {
	if !ValidDigest(d) {
		return false
	}
	fi, err := os.Stat(s.Path(d))
	return err == nil && fi.Mode().IsRegular()
}

// Stat returns the stored artifact with digest d, or an error wrapping ErrNotFound.
func (s *Store) Stat(d string) (Artifact, error) {
	if err := checkDigest(d); err != nil {
		return Artifact{}, err
	}
	fi, err := os.Stat(s.Path(d))
	if errors.Is(err, os.ErrNotExist) {
		return Artifact{}, fmt.Errorf("stat %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("stat %s: %w", d, err)
	}
	return Artifact{Digest: d, Size: fi.Size(), Path: s.Path(d)}, nil
}

// Reader opens the stored .tar.gz of digest d, to ship it to another host. The caller
// closes it.
func (s *Store) Reader(d string) (io.ReadCloser, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	f, err := os.Open(s.Path(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d, err)
	}
	return f, nil
}

// Put stores a .tar.gz artifact read from r (for example one shipped from another host)
// and returns it. The tar is validated as Unpack would (no unsafe entries) and its digest
// computed while it is written; the file appears under its digest atomically and durably
// (temp file, fsync, rename, fsync of the directory). Putting an artifact that is already
// stored is not an error. The caller compares the returned digest with the one it expects.
func (s *Store) Put(ctx context.Context, r io.Reader) (Artifact, error) {
	tmp, err := os.CreateTemp(s.tmpDir(), "put-*.tar.gz")
	if err != nil {
		return Artifact{}, fmt.Errorf("put artifact: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	err = func() error {
		gz, err := gzip.NewReader(io.TeeReader(r, tmp))
		if err != nil {
			return err
		}
		tee := io.TeeReader(gz, h)
		if err := scanTar(ctx, tee, s.limits); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, tee); err != nil {
			return err
		}
		return gz.Close()
	}()
	if err != nil {
		tmp.Close()
		return Artifact{}, fmt.Errorf("put artifact: %w", err)
	}
	return s.commit(tmp, formatDigest(h.Sum(nil)))
}

// commit makes the fully written temp file tmp the artifact d; it closes tmp.
func (s *Store) commit(tmp *os.File, d string) (Artifact, error) {
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return Artifact{}, fmt.Errorf("store %s: %w", d, err)
	}
	if err := tmp.Close(); err != nil {
		return Artifact{}, fmt.Errorf("store %s: %w", d, err)
	}
	if s.Has(d) {
		os.Remove(tmp.Name())
		return s.Stat(d)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return Artifact{}, fmt.Errorf("store %s: %w", d, err)
	}
	if err := os.Rename(tmp.Name(), s.Path(d)); err != nil {
		return Artifact{}, fmt.Errorf("store %s: %w", d, err)
	}
	if err := atomicfile.SyncDir(s.artifactDir()); err != nil {
		return Artifact{}, fmt.Errorf("store %s: %w", d, err)
	}
	s.logger.Info("artifact stored", "digest", d)
	return s.Stat(d)
}

// Unpack makes the tree of artifact d appear at dest, which Unpack owns: when dest already
// exists it is taken to be a complete earlier unpack of d and reused as is (dest only ever
// appears through an atomic rename of a verified tree). Otherwise the artifact is extracted
// into a temp directory beside dest, the digest of the bytes read is verified, the file
// system is synced, and the directory is renamed to dest. On any error nothing appears at
// dest. Concurrent Unpacks of the same d and dest are safe; one of them wins the rename.
//
// A stored file that is not the artifact d (corrupt gzip or tar, or another digest) gives
// a *CorruptError naming the digest and the file, which is moved aside (suffix ".damaged")
// so that it is never read again and a rebuild of an unchanged source can store d anew;
// what is stored under d is only ever bytes whose digest is d. An artifact over the
// limits (see SetLimits) gives ErrTooLarge.
//
// The unpacked tree is shared by every instance of a release and must be treated as
// read-only by them; nothing here enforces that.
func (s *Store) Unpack(ctx context.Context, d, dest string) error {
	if err := checkDigest(d); err != nil {
		return err
	}
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
		return nil
	}
	f, err := os.Open(s.Path(d))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpack %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("unpack %s: %w", d, err)
	}
	defer f.Close()
	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("unpack %s: %w", d, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dest)+".unpack-*")
	if err != nil {
		return fmt.Errorf("unpack %s: %w", d, err)
	}
	if err := s.unpackTo(ctx, f, d, tmp); err != nil {
		os.RemoveAll(tmp)
		if ctx.Err() == nil && corrupt(err) {
			return s.quarantine(d, err)
		}
		return fmt.Errorf("unpack %s (%s): %w", d, s.Path(d), err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.RemoveAll(tmp)
		if fi, serr := os.Stat(dest); serr == nil && fi.IsDir() {
			return nil // a concurrent Unpack won
		}
		return fmt.Errorf("unpack %s: %w", d, err)
	}
	if err := atomicfile.SyncDir(parent); err != nil {
		return fmt.Errorf("unpack %s: %w", d, err)
	}
	return nil
}

// ErrCorrupt is returned (wrapped in a *CorruptError) when a stored artifact file is
// not the artifact its name says: corrupt gzip or tar data, or another digest.
var ErrCorrupt = errors.New("artifact file is corrupt")

// CorruptError names a stored artifact found corrupt and where the file was moved.
type CorruptError struct {
	Digest string
	// Path is where the file was stored; MovedTo where it is now ("" if the move failed).
	Path, MovedTo string
	Err           error
}

// Error names the artifact, its file, the problem and what to do.
func (e *CorruptError) Error() string {
	where := "it could not be moved aside"
	if e.MovedTo != "" {
		where = "it was moved to " + e.MovedTo
	}
	return fmt.Sprintf("artifact %s (%s) is corrupt: %v; %s. Only these exact bytes can run this release: "+
		"the next build of an unchanged source (shoal up, shoal deploy) stores it again, or roll back to another release",
		e.Digest, e.Path, e.Err, where)
}

// Unwrap returns ErrCorrupt and the problem found.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// corrupt reports whether err from unpackTo means the file is not a valid artifact, as
// opposed to a problem of this host (disk full, permissions) or an unsafe or oversized
// but genuine artifact.
func corrupt(err error) bool {
	var ce *CorruptError
	return errors.Is(err, ErrDigestMismatch) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) || errors.As(err, new(flate.CorruptInputError)) ||
		errors.As(err, &ce)
}

// quarantine moves the corrupt file of d aside and returns the *CorruptError.
func (s *Store) quarantine(d string, cause error) error {
	ce := &CorruptError{Digest: d, Path: s.Path(d), Err: cause}
	moved := s.Path(d) + ".damaged"
	if err := os.Rename(ce.Path, moved); err != nil {
		s.logger.Error("cannot move a corrupt artifact aside", "digest", d, "file", ce.Path, "error", err)
	} else {
		ce.MovedTo = moved
		atomicfile.SyncDir(s.artifactDir())
	}
	s.logger.Error("corrupt artifact", "digest", d, "file", ce.Path, "error", cause)
	return ce
}

func (s *Store) unpackTo(ctx context.Context, r io.Reader, d, dir string) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	h := sha256.New()
	tee := io.TeeReader(gz, h)
	if err := extractTar(ctx, tee, dir, s.limits); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return err
	}
	if got := formatDigest(h.Sum(nil)); got != d {
		return fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// One syncfs instead of an fsync per file: node_modules trees have many thousands.
	return unix.Syncfs(fd)
}

// Delete removes the artifact d; deleting an artifact that is not stored is not an error.
// Unpacked trees are the caller's to remove.
func (s *Store) Delete(d string) error {
	if err := checkDigest(d); err != nil {
		return err
	}
	if err := os.Remove(s.Path(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", d, err)
	}
	if err := atomicfile.SyncDir(s.artifactDir()); err != nil {
		return fmt.Errorf("delete %s: %w", d, err)
	}
	return s.forgetBuilds(func(digest string) bool { return digest == d })
}

// List returns every stored artifact, sorted by digest.
func (s *Store) List() ([]Artifact, error) {
	ents, err := os.ReadDir(s.artifactDir())
	if err != nil {
		return nil, fmt.Errorf("list artifacts: %w", err)
	}
	var out []Artifact
	for _, e := range ents {
		d, ok := digestFromFileName(e.Name())
		if !ok {
			continue
		}
		a, err := s.Stat(d)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list artifacts: %w", err)
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// Prune deletes every stored artifact whose digest is not in keep, nor a layer of a kept
// image artifact (PutImage), and returns the digests it deleted, sorted.
func (s *Store) Prune(keep []string) ([]string, error) {
	kept := map[string]bool{}
	for _, d := range keep {
		kept[d] = true
		if !s.Has(d) {
			continue
		}
		layers, err := s.Layers(d)
		if err != nil {
			// Keep what cannot be read rather than guess; OpenImage reports it.
			s.logger.Warn("prune: cannot read the layers of an image; pruning nothing this time", "digest", d, "error", err)
			return nil, nil
		}
		for _, l := range layers {
			kept[l.Artifact] = true
		}
	}
	all, err := s.List()
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	var removed []string
	for _, a := range all {
		if kept[a.Digest] {
			continue
		}
		if err := s.Delete(a.Digest); err != nil {
			return removed, fmt.Errorf("prune: %w", err)
		}
		removed = append(removed, a.Digest)
	}
	return removed, nil
}
