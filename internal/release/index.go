package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// indexVersion is the schema version of index.json.
const indexVersion = 1

// indexFile is the persisted form of the build index: build key -> artifact digest.
type indexFile struct {
	Version int                   `json:"version"`
	Builds  map[string]indexEntry `json:"builds"`
}

type indexEntry struct {
	Digest string    `json:"digest"`
	At     time.Time `json:"at"`
}

func (s *Store) indexPath() string { return filepath.Join(s.root, "index.json") }

// parseIndex decodes index.json. Entries with an invalid key or digest are dropped: the
// index is a cache, and a bad entry only costs a rebuild.
func parseIndex(b []byte) (indexFile, error) {
	var f indexFile
	if err := json.Unmarshal(b, &f); err != nil {
		return indexFile{}, fmt.Errorf("parse index: %w", err)
	}
	if f.Version != indexVersion {
		return indexFile{}, fmt.Errorf("parse index: unsupported version %d", f.Version)
	}
	for k, e := range f.Builds {
		if !ValidDigest(k) || !ValidDigest(e.Digest) {
			delete(f.Builds, k)
		}
	}
	if f.Builds == nil {
		f.Builds = map[string]indexEntry{}
	}
	return f, nil
}

// readIndex returns the index; a missing or unreadable one is empty (logged), since it is
// only a cache. The caller holds indexMu.
func (s *Store) readIndex() indexFile {
	b, err := os.ReadFile(s.indexPath())
	if err == nil {
		f, perr := parseIndex(b)
		if perr == nil {
			return f
		}
		err = perr
	}
	if !errors.Is(err, os.ErrNotExist) {
		s.logger.Warn("build index unreadable, starting empty", "error", err)
	}
	return indexFile{Version: indexVersion, Builds: map[string]indexEntry{}}
}

func (s *Store) writeIndex(f indexFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.indexPath(), b, 0o644)
}

func (s *Store) lookupBuild(key string) (string, bool) {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	e, ok := s.readIndex().Builds[key]
	return e.Digest, ok
}

func (s *Store) recordBuild(d string, keys ...string) error {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	f := s.readIndex()
	now := time.Now().UTC()
	for _, k := range keys {
		f.Builds[k] = indexEntry{Digest: d, At: now}
	}
	if err := s.writeIndex(f); err != nil {
		return fmt.Errorf("record build: %w", err)
	}
	return nil
}

// forgetBuilds drops index entries whose digest matches drop.
func (s *Store) forgetBuilds(drop func(digest string) bool) error {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	f := s.readIndex()
	changed := false
	for k, e := range f.Builds {
		if drop(e.Digest) {
			delete(f.Builds, k)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := s.writeIndex(f); err != nil {
		return fmt.Errorf("update build index: %w", err)
	}
	return nil
}
