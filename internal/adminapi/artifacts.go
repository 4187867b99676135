package adminapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/release"
)

// MaxArtifactUpload bounds the body of PUT /v1/artifacts/{digest}: the
// compressed artifact, 2 GiB. A larger one is refused with 413 and nothing
// is kept. (What an artifact may unpack to is bounded separately, by
// build.max_unpacked_size.)
const MaxArtifactUpload = 2 << 30

// ArtifactRoutes registers the artifact routes on mux, through which
// `shoal deploy` ships the artifact it built (and agents fetch releases):
//
//	HEAD /v1/artifacts/{digest}  200 when held, 404 when not
//	PUT  /v1/artifacts/{digest}  body: the .tar.gz as the release store keeps it; 201 with the artifact's size
//	GET  /v1/artifacts/{digest}  the .tar.gz, with Content-Length
//
// A malformed digest is 400. A PUT whose bytes are another artifact than
// the URL names is 400 naming both digests, and nothing is kept; bytes
// that are no artifact are 400; a body over MaxArtifactUpload is 413.
// Authentication is the caller's: wrap mux with RequireToken.
func ArtifactRoutes(mux *http.ServeMux, c Artifacts) {
	mux.Handle("HEAD /v1/artifacts/{digest}", Handle(func(w http.ResponseWriter, r *http.Request) error {
		held, err := c.HasArtifact(r.PathValue("digest"))
		if err != nil {
			return artifactStatus(err)
		}
		if !held {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	mux.Handle("GET /v1/artifacts/{digest}", Handle(func(w http.ResponseWriter, r *http.Request) error {
		return ServeArtifact(w, r, c)
	}))
	mux.Handle("PUT /v1/artifacts/{digest}", Handle(func(w http.ResponseWriter, r *http.Request) error {
		d := r.PathValue("digest")
		if _, err := c.HasArtifact(d); err != nil {
			return artifactStatus(err)
		}
		if r.ContentLength > MaxArtifactUpload {
			return fmt.Errorf("%w: the artifact is %d bytes, more than the %d an upload may have", ErrTooLarge, r.ContentLength, int64(MaxArtifactUpload))
		}
		body := &limitedBody{r: r.Body, left: MaxArtifactUpload}
		art, err := c.PutArtifact(r.Context(), d, body)
		if body.over {
			return fmt.Errorf("%w: the artifact is more than the %d bytes an upload may have; nothing kept", ErrTooLarge, int64(MaxArtifactUpload))
		}
		if err != nil {
			return artifactStatus(err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "{\"digest\":%q,\"size\":%d}\n", art.Digest, art.Size)
		return nil
	}))
}

// ServeArtifact answers GET /v1/artifacts/{digest} from c: the .tar.gz
// with Content-Length, 404 when it is not held, 400 for a malformed
// digest. `shoal server` serves it to agents on its fleet listener too.
func ServeArtifact(w http.ResponseWriter, r *http.Request, c Artifacts) error {
	rc, size, err := c.OpenArtifact(r.PathValue("digest"))
	if err != nil {
		return artifactStatus(err)
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc) // a client that goes away ends it; the status is sent
	return nil
}

// Artifacts is what ArtifactRoutes serves: a *controller.Controller
// (`shoal up`, its own store) or a *controller.Uploads (`shoal server`, one
// store for every app).
type Artifacts interface {
	HasArtifact(d string) (bool, error)
	PutArtifact(ctx context.Context, want string, r io.Reader) (release.Artifact, error)
	OpenArtifact(d string) (io.ReadCloser, int64, error)
}

// artifactStatus gives the controller's artifact errors their status
// without changing their text.
func artifactStatus(err error) error {
	switch {
	case errors.Is(err, controller.ErrInvalidDigest), errors.Is(err, controller.ErrDigestMismatch),
		errors.Is(err, controller.ErrBadArtifact):
		return &statusError{status: ErrBadRequest, err: err}
	case errors.Is(err, controller.ErrUnknownArtifact):
		return &statusError{status: ErrNotFound, err: err}
	}
	return err
}

// limitedBody reads at most left bytes of r and then fails, recording
// that the body was longer (http.MaxBytesReader would also close the
// connection, which a streaming upload does not need).
type limitedBody struct {
	r    io.Reader
	left int64
	over bool
}

var errBodyTooLarge = errors.New("body over the upload limit")

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			b.over = true
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
