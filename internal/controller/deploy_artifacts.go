package controller

import (
	"archive/tar"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
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

// Uploads is the upload side of an artifact store: what `shoal deploy`
// ships by digest (HEAD, PUT, GET /v1/artifacts/{digest}), checked against
// its digest, and remembered for an hour so that pruning keeps it until
// the deploy that names it. A Controller makes its own unless
// Options.Uploads shares one (`shoal server`: one artifact store for every
// app). Safe for concurrent use; uploads are serialised. Create it with
// NewUploads.
type Uploads struct {
	arts    *release.Store
	now     func() time.Time
	onEvent func(api.Event)

	upMu   sync.Mutex // serialises uploads
	mu     sync.Mutex
	recent map[string]time.Time
}

// NewUploads returns the upload side of arts. now is the clock (nil:
// time.Now); onEvent, when set, receives an event for every upload and
// every refused one (a full disk, bytes of another digest).
func NewUploads(arts *release.Store, now func() time.Time, onEvent func(api.Event)) *Uploads {
	if now == nil {
		now = time.Now
	}
	if onEvent == nil {
		onEvent = func(api.Event) {}
	}
	return &Uploads{arts: arts, now: now, onEvent: onEvent, recent: map[string]time.Time{}}
}

// HasArtifact reports whether the artifact with digest d is held, so that
// a deploy can name it without uploading it. ErrInvalidDigest for a
// malformed d.
func (u *Uploads) HasArtifact(d string) (bool, error) {
	if !release.ValidDigest(d) {
		return false, fmt.Errorf("%w %q: want sha256:<64 lowercase hex digits>", ErrInvalidDigest, d)
	}
	return u.arts.Has(d), nil
}

// MissingArtifacts returns the artifacts of release digest d that are not
// held: d itself, or, when d is an image kept by layer, its layers'
// artifacts (release.Store.Missing). A store that mirrors another (a
// cluster's follower) fetches these. ErrInvalidDigest for a malformed d.
func (u *Uploads) MissingArtifacts(d string) ([]string, error) {
	if _, err := u.HasArtifact(d); err != nil {
		return nil, err
	}
	return u.arts.Missing(d)
}

// PutArtifact stores the artifact read from r, a .tar.gz as
// release.Store keeps it, which must be the artifact with digest want:
// the digest is computed from the bytes while they are written, and
// bytes that turn out to be another artifact are not kept
// (ErrDigestMismatch, naming both digests). Bytes that are no artifact are
// ErrBadArtifact; a read error of r is returned wrapped as it is, so the
// caller can recognise its own (a size limit). Uploading an artifact that
// is held already is not an error. Uploads are serialised.
func (u *Uploads) PutArtifact(ctx context.Context, want string, r io.Reader) (release.Artifact, error) {
	if _, err := u.HasArtifact(want); err != nil {
		return release.Artifact{}, err
	}
	u.upMu.Lock()
	defer u.upMu.Unlock()
	held := map[string]bool{}
	if list, err := u.arts.List(); err == nil {
		for _, a := range list {
			held[a.Digest] = true
		}
	} else {
		return release.Artifact{}, fmt.Errorf("upload %s: %w", want, err)
	}
	start := u.now()
	art, err := u.arts.Put(ctx, r)
	if err != nil {
		// An event, like a failed build: the deployer sees the error, the
		// operator of this host the event (a full disk, say).
		u.onEvent(api.Event{Type: "artifact", Reason: fmt.Sprintf("upload of artifact %s failed: %v", short(want), err)})
		if badArtifact(err) {
			return release.Artifact{}, fmt.Errorf("%w: upload %s: %w", ErrBadArtifact, want, err)
		}
		return release.Artifact{}, fmt.Errorf("upload %s: %w", want, err)
	}
	if art.Digest != want {
		kept := "nothing kept"
		if !held[art.Digest] {
			if err := u.arts.Delete(art.Digest); err != nil {
				kept = "and it could not be removed: " + err.Error()
			}
		}
		err := fmt.Errorf("%w: the uploaded bytes are artifact %s, not %s as the request says; %s",
			ErrDigestMismatch, art.Digest, want, kept)
		u.onEvent(api.Event{Type: "artifact", Reason: "upload refused: " + err.Error()})
		return release.Artifact{}, err
	}
	u.mu.Lock()
	u.recent[want] = u.now()
	u.mu.Unlock()
	u.onEvent(api.Event{Type: "artifact", Reason: fmt.Sprintf("received artifact %s (%d bytes in %s)",
		short(want), art.Size, u.now().Sub(start).Round(time.Millisecond))})
	return art, nil
}

// OpenArtifact opens the held artifact d for reading (the caller closes
// it) and returns its size in bytes; an error wrapping ErrUnknownArtifact
// when it is not held.
func (u *Uploads) OpenArtifact(d string) (io.ReadCloser, int64, error) {
	if _, err := u.HasArtifact(d); err != nil {
		return nil, 0, err
	}
	a, err := u.arts.Stat(d)
	if errors.Is(err, release.ErrNotFound) {
		return nil, 0, fmt.Errorf("%w: %s is not held by this shoal", ErrUnknownArtifact, d)
	}
	if err != nil {
		return nil, 0, err
	}
	rc, err := u.arts.Reader(d)
	if err != nil {
		return nil, 0, err
	}
	return rc, a.Size, nil
}

// Recent returns the artifacts uploaded within the last hour, which
// pruning keeps, and forgets the older ones.
func (u *Uploads) Recent() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for d, at := range u.recent {
		if u.now().Sub(at) > uploadGrace {
			delete(u.recent, d)
			continue
		}
		out = append(out, d)
	}
	return out
}

// HasArtifact is Uploads.HasArtifact on the controller's artifacts.
func (c *Controller) HasArtifact(d string) (bool, error) { return c.up.HasArtifact(d) }

// PutArtifact is Uploads.PutArtifact on the controller's artifacts.
func (c *Controller) PutArtifact(ctx context.Context, want string, r io.Reader) (release.Artifact, error) {
	return c.up.PutArtifact(ctx, want, r)
}

// OpenArtifact is Uploads.OpenArtifact on the controller's artifacts.
func (c *Controller) OpenArtifact(d string) (io.ReadCloser, int64, error) {
	return c.up.OpenArtifact(d)
}

// badArtifact reports whether err from release.Store.Put means the bytes
// are no artifact, as opposed to a problem of this host or of reading.
func badArtifact(err error) bool {
	return errors.Is(err, release.ErrUnsafeEntry) || errors.Is(err, release.ErrTooLarge) ||
		errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, tar.ErrHeader) || errors.As(err, new(flate.CorruptInputError))
}

// unheld returns an error wrapping ErrUnknownArtifact when artifact d, or
// a layer of the image it is, is not held: a deploy must not name an image
// its hosts could not load.
func (c *Controller) unheld(d string) error {
	m, err := c.o.Artifacts.Missing(d)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %s: %w", ErrUnknownArtifact, d, err)
	case len(m) == 0:
		return nil
	case m[0] == d:
		return fmt.Errorf("%w: %s is not held by this shoal; upload it first (PUT /v1/artifacts/%s)", ErrUnknownArtifact, d, d)
	}
	return fmt.Errorf("%w: the layers %s of image %s are not held by this shoal; upload them first (PUT /v1/artifacts/{digest})",
		ErrUnknownArtifact, strings.Join(m, ", "), d)
}
