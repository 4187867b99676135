package release

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
)

// ImageFunc builds a container image from buildContext (a tar of the build
// output folder) and returns the saved image's tar stream (`docker save`),
// which becomes the artifact. The caller closes the stream.
type ImageFunc func(ctx context.Context, buildContext io.Reader, log io.Writer) (io.ReadCloser, error)

// buildImage sends the output folder to spec.Image as a build context and
// stores the tar it returns as an image artifact and its layers (PutImage).
func (s *Store) buildImage(ctx context.Context, spec BuildSpec, out string) (Artifact, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeTar(ctx, pw, out, spec.absExclude(), s.limits)
		pw.CloseWithError(err)
		done <- err
	}()
	log := spec.Log
	if log == nil {
		log = io.Discard
	}
	rc, err := spec.Image(ctx, pr, log)
	pr.CloseWithError(errors.New("image build ended"))
	if cerr := <-done; cerr != nil && err == nil && !errors.Is(cerr, io.ErrClosedPipe) {
		err = fmt.Errorf("build context %s: %w", out, cerr)
	}
	if err != nil {
		if rc != nil {
			rc.Close()
		}
		return Artifact{}, fmt.Errorf("build image: %w", err)
	}
	defer rc.Close()
	a, err := s.PutImage(ctx, rc)
	if err != nil {
		return Artifact{}, fmt.Errorf("build image: %w", err)
	}
	return a, nil
}

// PutTar stores an uncompressed tar stream (a saved container image, for
// example) as an artifact: its entries are validated as Put validates
// them, its digest is that of the bytes read, and it is kept gzipped like
// every artifact, so that Unpack, Reader and shipping to other hosts treat
// it as any other.
func (s *Store) PutTar(ctx context.Context, r io.Reader) (Artifact, error) {
	tmp, err := os.CreateTemp(s.tmpDir(), "tar-*.tar.gz")
	if err != nil {
		return Artifact{}, fmt.Errorf("put tar: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	gz := gzip.NewWriter(bw)
	tee := io.TeeReader(r, io.MultiWriter(h, gz))
	err = scanTar(ctx, tee, s.limits)
	if err == nil {
		_, err = io.Copy(io.Discard, tee) // the tar's end blocks
	}
	if err == nil {
		err = gz.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		tmp.Close()
		return Artifact{}, fmt.Errorf("put tar: %w", err)
	}
	return s.commit(tmp, formatDigest(h.Sum(nil)))
}

// OpenTar returns the uncompressed tar stream of artifact d after checking
// that its bytes still hash to d (one read of the whole file before the
// stream is returned): what a reader gets is only ever artifact d. A
// stored file that is not d gives a *CorruptError and is moved aside, as
// Unpack does. The caller closes the stream.
func (s *Store) OpenTar(ctx context.Context, d string) (io.ReadCloser, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	verify := func() error {
		f, err := os.Open(s.Path(d))
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("open %s: %w", d, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", d, err)
		}
		defer f.Close()
		gz, err := gzip.NewReader(bufio.NewReaderSize(f, 256<<10))
		if err != nil {
			return err
		}
		h := sha256.New()
		if _, err := io.Copy(h, ctxReader{ctx, gz}); err != nil {
			return err
		}
		if got := formatDigest(h.Sum(nil)); got != d {
			return fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
		}
		return nil
	}
	if err := verify(); err != nil {
		if corrupt(err) {
			return nil, s.quarantine(d, err)
		}
		return nil, err
	}
	f, err := os.Open(s.Path(d))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d, err)
	}
	gz, err := gzip.NewReader(bufio.NewReaderSize(f, 256<<10))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", d, err)
	}
	return gzipFile{gz, f}, nil
}

type gzipFile struct {
	*gzip.Reader
	f *os.File
}

func (g gzipFile) Close() error { return errors.Join(g.Reader.Close(), g.f.Close()) }

// ctxReader ends a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
