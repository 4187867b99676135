package agent

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/shoal-dev/shoal/internal/release"
)

// ArtifactSource fetches release artifacts (the .tar.gz files of package
// release) by digest. The agent verifies what it reads: a source need not.
// Implementations must be safe for concurrent use.
type ArtifactSource interface {
	// Fetch returns the artifact's bytes; the caller closes the reader.
	Fetch(ctx context.Context, digest string) (io.ReadCloser, error)
}

// HTTPSource fetches artifacts from the server with GET
// {Base}/v1/artifacts/{digest}.
type HTTPSource struct {
	// Base is the server's URL, "https://host:port".
	Base string
	// Client sends the requests (with the TLS configuration that lets the
	// agent in); nil means http.DefaultClient.
	Client *http.Client
}

// Fetch implements ArtifactSource. A non-200 answer is an error naming the
// URL, its status and the start of its body; the agent adds the digest.
func (s *HTTPSource) Fetch(ctx context.Context, digest string) (io.ReadCloser, error) {
	u := strings.TrimRight(s.Base, "/") + "/v1/artifacts/" + url.PathEscape(digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err // names the method and URL
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp.Body, nil
}

// maxTarStream bounds the uncompressed bytes hashed while an artifact is
// fetched: the most a tar within release's default limits can be (file bytes,
// plus a header block, padding and a PAX header for each entry). It stops a
// gzip bomb before Store.Put applies the real limits.
const maxTarStream = release.DefaultMaxUnpackedBytes + release.DefaultMaxUnpackedEntries*2048

// flight runs one call per key at a time: callers for a key that is in flight
// wait for that call and share its error.
type flight struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done chan struct{}
	err  error
}

// do runs fn for key unless a call for key is in flight, in which case it
// waits for that one (or ctx) and returns its error.
func (f *flight) do(ctx context.Context, key string, fn func() error) error {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.calls == nil {
		f.calls = map[string]*call{}
	}
	c := &call{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	c.err = fn()
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
	close(c.done)
	return c.err
}

// wait returns once no call for key is in flight, or ctx ends.
func (f *flight) wait(ctx context.Context, key string) error {
	f.mu.Lock()
	c, ok := f.calls[key]
	f.mu.Unlock()
	if !ok {
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ensureArtifact makes the artifact digest available unpacked and returns its
// directory: fetched (haveArtifact) when the store does not hold it, and
// unpacked once per digest under <DataDir>/releases/<hex>.
func (a *Agent) ensureArtifact(ctx context.Context, digest string) (string, error) {
	if err := a.haveArtifact(ctx, digest); err != nil {
		return "", err
	}
	dir := filepath.Join(a.dataDir, "releases", strings.TrimPrefix(digest, release.DigestPrefix))
	if err := a.artifacts.Unpack(ctx, digest, dir); err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	}
	return dir, nil
}

// haveArtifact makes the store hold the artifact digest: fetched (once,
// whatever the number of concurrent starts) when it does not, verified and
// stored.
func (a *Agent) haveArtifact(ctx context.Context, digest string) error {
	// The fetch runs in the ctx of the start that began it; a start that
	// waited for it and is still wanted when that one gave up fetches anew.
	for attempt := 0; !a.artifacts.Has(digest); attempt++ {
		err := a.fetches.do(ctx, digest, func() error {
			if a.artifacts.Has(digest) {
				return nil
			}
			fctx, cancel := context.WithTimeout(ctx, a.fetchTimeout)
			defer cancel()
			return a.fetch(fctx, digest)
		})
		if err == nil {
			break
		}
		if ctx.Err() != nil || attempt == 2 || !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}

// fetch reads the artifact from the source into a temp file while hashing
// its uncompressed tar stream, and stores it only when that hash is digest:
// bytes of another artifact are refused and nothing of them is kept.
func (a *Agent) fetch(ctx context.Context, digest string) error {
	rc, err := a.source.Fetch(ctx, digest)
	if err != nil {
		return &FetchError{Digest: digest, Err: err}
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(a.tmpDir(), "fetch-*.tar.gz")
	if err != nil {
		return fmt.Errorf("fetch artifact %s: %w", digest, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	got, err := hashArtifact(io.TeeReader(rc, tmp))
	if err != nil {
		return &FetchError{Digest: digest, Err: err}
	}
	if got != digest {
		return &FetchError{Digest: digest, Err: fmt.Errorf("%w: the source sent artifact %s", release.ErrDigestMismatch, got)}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("fetch artifact %s: %w", digest, err)
	}
	art, err := a.artifacts.Put(ctx, tmp)
	if err != nil {
		return fmt.Errorf("store artifact %s: %w", digest, err)
	}
	if art.Digest != digest {
		// Put hashed other bytes than we did: only a changed temp file
		// can do that. Keep nothing of it.
		if derr := a.artifacts.Delete(art.Digest); derr != nil {
			a.log.Error("cannot delete a mismatched artifact", "digest", art.Digest, "error", derr)
		}
		return fmt.Errorf("store artifact %s: %w: stored as %s", digest, release.ErrDigestMismatch, art.Digest)
	}
	a.log.Info("artifact fetched", "digest", digest, "bytes", art.Size)
	return nil
}

// hashArtifact reads a .tar.gz to its end and returns the digest of its
// uncompressed stream, as package release computes it.
func hashArtifact(r io.Reader) (string, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return "", fmt.Errorf("read artifact: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(gz, maxTarStream+1))
	if err != nil {
		return "", fmt.Errorf("read artifact: %w", err)
	}
	if n > maxTarStream {
		return "", fmt.Errorf("read artifact: %w: over %d bytes uncompressed", release.ErrTooLarge, int64(maxTarStream))
	}
	if err := gz.Close(); err != nil {
		return "", fmt.Errorf("read artifact: %w", err)
	}
	// Whatever follows the gzip stream is still part of the file.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", fmt.Errorf("read artifact: %w", err)
	}
	return release.DigestPrefix + hex.EncodeToString(h.Sum(nil)), nil
}

// FetchError is an artifact that could not be fetched, or whose bytes were
// not the artifact asked for (it wraps release.ErrDigestMismatch then).
type FetchError struct {
	Digest string
	Err    error
}

// Error names the digest and the problem.
func (e *FetchError) Error() string { return fmt.Sprintf("fetch artifact %s: %v", e.Digest, e.Err) }

// Unwrap returns the problem.
func (e *FetchError) Unwrap() error { return e.Err }
