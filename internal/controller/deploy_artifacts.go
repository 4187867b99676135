package controller

import (
	"archive/tar"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/release"
)

// Errors of the artifact transfer; the admin API maps them to 400.
var (
	// ErrInvalidDigest means a digest is not "sha256:" and 64 lowercase
	// hex digits.
	ErrInvalidDigest = errors.New("invalid artifact digest")
	// ErrDigestMismatch means uploaded bytes are not the artifact their
	// digest names; nothing was kept.
	ErrDigestMismatch = errors.New("artifact digest mismatch")
	// ErrBadArtifact means uploaded bytes are not an artifact shoal can
	// run: not gzip, not tar, an unsafe entry, or over the unpack limits.
	ErrBadArtifact = errors.New("not a valid artifact")
)

// uploadGrace is how long an uploaded artifact that no release uses yet is
// kept from pruning: the deploy that names it follows its upload.
const uploadGrace = time.Hour

// HasArtifact reports whether the artifact with digest d is held, so that
// a deploy can name it without uploading it. ErrInvalidDigest for a
// malformed d.
func (c *Controller) HasArtifact(d string) (bool, error) {
	if !release.ValidDigest(d) {
		return false, fmt.Errorf("%w %q: want sha256:<64 lowercase hex digits>", ErrInvalidDigest, d)
	}
	return c.o.Artifacts.Has(d), nil
}

// PutArtifact stores the artifact read from r, a .tar.gz as
// release.Store keeps it, which must be the artifact with digest want:
// the digest is computed from the bytes while they are written, and
// bytes that turn out to be another artifact are not kept
// (ErrDigestMismatch, naming both digests). Bytes that are no artifact are
// ErrBadArtifact; a read error of r is returned wrapped as it is, so the
// caller can recognise its own (a size limit). Uploading an artifact that
// is held already is not an error. Uploads are serialised.
func (c *Controller) PutArtifact(ctx context.Context, want string, r io.Reader) (release.Artifact, error) {
	if _, err := c.HasArtifact(want); err != nil {
		return release.Artifact{}, err
	}
	c.upMu.Lock()
	defer c.upMu.Unlock()
	held := map[string]bool{}
	if list, err := c.o.Artifacts.List(); err == nil {
		for _, a := range list {
			held[a.Digest] = true
		}
	} else {
		return release.Artifact{}, fmt.Errorf("upload %s: %w", want, err)
	}
	start := c.now()
	art, err := c.o.Artifacts.Put(ctx, r)
	if err != nil {
		// An event, like a failed build: the deployer sees the error, the
		// operator of this host the event (a full disk, say).
		c.events.add(api.Event{Type: "artifact", Reason: fmt.Sprintf("upload of artifact %s failed: %v", short(want), err)})
		if badArtifact(err) {
			return release.Artifact{}, fmt.Errorf("%w: upload %s: %w", ErrBadArtifact, want, err)
		}
		return release.Artifact{}, fmt.Errorf("upload %s: %w", want, err)
	}
	if art.Digest != want {
		kept := "nothing kept"
		if !held[art.Digest] {
			if err := c.o.Artifacts.Delete(art.Digest); err != nil {
				kept = "and it could not be removed: " + err.Error()
			}
		}
		err := fmt.Errorf("%w: the uploaded bytes are artifact %s, not %s as the request says; %s",
			ErrDigestMismatch, art.Digest, want, kept)
		c.events.add(api.Event{Type: "artifact", Reason: "upload refused: " + err.Error()})
		return release.Artifact{}, err
	}
	c.uploaded(want)
	c.events.add(api.Event{Type: "artifact", Reason: fmt.Sprintf("received artifact %s (%d bytes in %s)",
		short(want), art.Size, c.now().Sub(start).Round(time.Millisecond))})
	return art, nil
}

// OpenArtifact opens the held artifact d for reading (the caller closes
// it) and returns its size in bytes; an error wrapping ErrUnknownArtifact
// when it is not held.
func (c *Controller) OpenArtifact(d string) (io.ReadCloser, int64, error) {
	if _, err := c.HasArtifact(d); err != nil {
		return nil, 0, err
	}
	a, err := c.o.Artifacts.Stat(d)
	if errors.Is(err, release.ErrNotFound) {
		return nil, 0, fmt.Errorf("%w: %s is not held by this shoal", ErrUnknownArtifact, d)
	}
	if err != nil {
		return nil, 0, err
	}
	rc, err := c.o.Artifacts.Reader(d)
	if err != nil {
		return nil, 0, err
	}
	return rc, a.Size, nil
}

// badArtifact reports whether err from release.Store.Put means the bytes
// are no artifact, as opposed to a problem of this host or of reading.
func badArtifact(err error) bool {
	return errors.Is(err, release.ErrUnsafeEntry) || errors.Is(err, release.ErrTooLarge) ||
		errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, tar.ErrHeader) || errors.As(err, new(flate.CorruptInputError))
}

// uploaded keeps artifact d from pruning for uploadGrace (prune), so
// that a deploy that names it after its upload still finds it.
func (c *Controller) uploaded(d string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.uploads == nil {
		c.uploads = map[string]time.Time{}
	}
	c.uploads[d] = c.now()
}

// recentUploads returns the uploaded artifacts still within uploadGrace,
// and forgets the older ones.
func (c *Controller) recentUploads() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for d, at := range c.uploads {
		if c.now().Sub(at) > uploadGrace {
			delete(c.uploads, d)
			continue
		}
		out = append(out, d)
	}
	return out
}
