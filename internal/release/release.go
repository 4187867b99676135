// Package release owns build artifacts: it builds an app once, packs the build output into
// a deterministic, content-addressed tar.gz, stores it under a data directory, and unpacks
// it safely for instances to run from.
//
// Digest. An artifact's digest is "sha256:<hex>" of the uncompressed tar stream, not of the
// gzip file: gzip output may change with the compressor's implementation, while the tar
// bytes are fully determined by the tree (entries sorted by path, mtimes zeroed to the Unix
// epoch, uid/gid 0 with no user or group names, permission bits preserved, symlinks kept as
// symlinks). The same tree therefore always has the same digest, on any host and any Go
// version that writes the same tar headers.
//
// On disk (see [Store]):
//
//	<root>/artifacts/sha256-<hex>.tar.gz   one file per artifact, written atomically
//	<root>/tmp/                            temp files of builds and puts in progress
//	<root>/index.json                      build key -> artifact digest (see [Store.BuildOnce])
//
// Unpacking rejects absolute names, ".." components, links that would leave the
// destination (each link resolved through the others: links.go), hard links, device files,
// duplicate entries and trees over the Limits, and verifies the digest of the bytes it read
// before the unpacked tree becomes visible; a stored file that is not its artifact is a
// *CorruptError and is moved aside. Packing applies the same link and size checks.
package release

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// DigestPrefix is the algorithm prefix of every digest this package produces.
const DigestPrefix = "sha256:"

// ErrNotFound is returned (wrapped) when a digest is not in the store.
var ErrNotFound = errors.New("artifact not found")

// ErrDigestMismatch is returned (wrapped) when bytes read do not hash to the expected digest.
var ErrDigestMismatch = errors.New("artifact digest mismatch")

// ErrUnsafeEntry is returned (wrapped) when a tar entry could write outside its destination
// or is of a type this package refuses (hard link, device, fifo).
var ErrUnsafeEntry = errors.New("unsafe tar entry")

// Artifact describes one stored artifact. It is a plain value, safe to copy and to encode.
type Artifact struct {
	// Digest is "sha256:<hex>" of the uncompressed tar stream.
	Digest string `json:"digest"`
	// Size is the size in bytes of the stored .tar.gz file.
	Size int64 `json:"size"`
	// Path is the stored .tar.gz file on this host.
	Path string `json:"path"`
}

// ValidDigest reports whether d has the form "sha256:" followed by 64 lowercase hex digits.
func ValidDigest(d string) bool {
	h, ok := strings.CutPrefix(d, DigestPrefix)
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func checkDigest(d string) error {
	if !ValidDigest(d) {
		return fmt.Errorf("invalid digest %q: want sha256:<64 hex digits>", d)
	}
	return nil
}

func formatDigest(sum []byte) string {
	return DigestPrefix + hex.EncodeToString(sum)
}

// fileName is the stored file name of digest d ("sha256-<hex>.tar.gz"); d must be valid.
func fileName(d string) string {
	return "sha256-" + strings.TrimPrefix(d, DigestPrefix) + ".tar.gz"
}

// digestFromFileName is the inverse of fileName; ok is false for other names.
func digestFromFileName(name string) (string, bool) {
	h, ok := strings.CutPrefix(name, "sha256-")
	if !ok {
		return "", false
	}
	h, ok = strings.CutSuffix(h, ".tar.gz")
	if !ok {
		return "", false
	}
	d := DigestPrefix + h
	return d, ValidDigest(d)
}
