package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"
)

// A saved container image is stored as several artifacts, so that a deploy
// that changes one layer moves that layer only (issue 16):
//
//   - one artifact per layer: a tar with the single regular file
//     "layer.tar" (the layer's tar, as `docker save` wrote it), so a layer
//     is fetched, verified, stored, synced and pruned as any artifact is;
//   - the image artifact, whose digest the release names: the saved tar
//     with each layer's file left empty, preceded by the entry
//     "shoal-image.json" (imageIndex) naming the artifact of each layer.
//
// OpenImage joins them back into a tar that `docker load` reads. An image
// artifact whose first entry is not "shoal-image.json" is a whole saved
// tar (how images were stored before; a rollback still loads it as is).
const (
	imageIndexName = "shoal-image.json"
	layerFileName  = "layer.tar"
	// maxImageRest bounds what a saved image holds besides its layers
	// (manifests, configs): a few KiB in practice.
	maxImageRest = 64 << 20
)

// Layer is one layer of a saved image stored as its own artifact.
type Layer struct {
	// Path is the layer's entry in the saved tar ("<id>/layer.tar", or
	// "blobs/sha256/<hex>" in the OCI layout).
	Path string `json:"path"`
	// Artifact is the digest of the artifact that holds the layer.
	Artifact string `json:"artifact"`
	// DiffID is "sha256:<hex>" of the layer's tar: the image config's
	// rootfs.diff_ids entry, by which an engine knows it holds the layer.
	DiffID string `json:"diff_id"`
	// Size is the layer tar's size in bytes.
	Size int64 `json:"size"`
}

// DiffIDs returns the diff IDs of layers, in order.
func DiffIDs(layers []Layer) []string {
	out := make([]string, len(layers))
	for i, l := range layers {
		out[i] = l.DiffID
	}
	return out
}

// imageIndex is the first entry of an image artifact.
type imageIndex struct {
	Version int     `json:"version"`
	Layers  []Layer `json:"layers,omitempty"`
	// Pull is the registry reference the image is pulled by, for an
	// image that travels through a registry (PutPulled); it has no Layers.
	Pull string `json:"pull,omitempty"`
}

// PutImage stores a saved image's tar stream (`docker save`) as an image
// artifact and one artifact per layer (see above) and returns the image
// artifact. A tar with no manifest.json naming layers is stored whole, as
// PutTar stores it.
func (s *Store) PutImage(ctx context.Context, r io.Reader) (Artifact, error) {
	spool, err := os.CreateTemp(s.tmpDir(), "image-*.tar")
	if err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	lim := s.limits.withDefaults()
	n, err := io.Copy(spool, io.LimitReader(ctxReader{ctx, r}, lim.MaxBytes+1))
	if err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	if n > lim.MaxBytes {
		return Artifact{}, fmt.Errorf("put image: %w: saved image over %d bytes", ErrTooLarge, lim.MaxBytes)
	}
	rewind := func() (*tar.Reader, error) {
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		return tar.NewReader(spool), nil
	}
	tr, err := rewind()
	if err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	order, err := savedLayers(tr)
	if err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	paths := map[string]bool{}
	for _, p := range order {
		paths[p] = true
	}
	if tr, err = rewind(); err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	if len(paths) == 0 {
		return s.PutTar(ctx, spool)
	}
	var rest bytes.Buffer
	tw := tar.NewWriter(&rest)
	stored := map[string]Layer{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Artifact{}, fmt.Errorf("put image: read saved tar: %w", err)
		}
		name := path.Clean(h.Name)
		if paths[name] && h.Typeflag == tar.TypeReg {
			l, err := s.putLayer(ctx, tr, h.Size)
			if err != nil {
				return Artifact{}, fmt.Errorf("put image: layer %s: %w", name, err)
			}
			l.Path = name
			stored[name] = l
			h.Size = 0
			if err := tw.WriteHeader(h); err != nil {
				return Artifact{}, fmt.Errorf("put image: %w", err)
			}
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return Artifact{}, fmt.Errorf("put image: %w", err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return Artifact{}, fmt.Errorf("put image: %w", err)
		}
		if rest.Len() > maxImageRest {
			return Artifact{}, fmt.Errorf("put image: %w: more than %d bytes besides the layers", ErrTooLarge, maxImageRest)
		}
	}
	if err := tw.Close(); err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	idx := imageIndex{Version: 1}
	for _, p := range order {
		l, ok := stored[p]
		if !ok {
			return Artifact{}, fmt.Errorf("put image: manifest.json names layer %s, which the tar lacks", p)
		}
		idx.Layers = append(idx.Layers, l)
	}
	ij, err := json.Marshal(idx)
	if err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	var out bytes.Buffer
	ow := tar.NewWriter(&out)
	if err := writeFile(ow, imageIndexName, ij); err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	if err := ow.Flush(); err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	// The rest's entries follow the index; its end-of-archive blocks end both.
	a, err := s.PutTar(ctx, io.MultiReader(&out, &rest))
	if err != nil {
		return Artifact{}, fmt.Errorf("put image: %w", err)
	}
	return a, nil
}

// savedLayers reads a saved tar's manifest.json and returns its layers'
// entry names in the order of the images' rootfs (the images' lists one
// after the other); none when the tar has no manifest.json.
func savedLayers(tr *tar.Reader) ([]string, error) {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read saved tar: %w", err)
		}
		if path.Clean(h.Name) != "manifest.json" {
			continue
		}
		var m []struct {
			Layers []string `json:"Layers"`
		}
		if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
			return nil, fmt.Errorf("saved tar: manifest.json: %w", err)
		}
		var out []string
		for _, img := range m {
			for _, l := range img.Layers {
				out = append(out, path.Clean(l))
			}
		}
		return out, nil
	}
}

// putLayer stores the next size bytes of r (one layer's tar) as the
// artifact of a layer.
func (s *Store) putLayer(ctx context.Context, r io.Reader, size int64) (Layer, error) {
	pr, pw := io.Pipe()
	h := sha256.New()
	done := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(layerHeader(size))
		if err == nil {
			_, err = io.Copy(tw, io.TeeReader(io.LimitReader(r, size), h))
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	a, err := s.PutTar(ctx, pr)
	pr.CloseWithError(errors.New("layer stored"))
	if werr := <-done; err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return Layer{}, err
	}
	return Layer{Artifact: a.Digest, DiffID: formatDigest(h.Sum(nil)), Size: size}, nil
}

// layerHeader is the one entry of a layer's artifact: fixed but for the
// size, so that a layer has one artifact digest wherever it is stored.
func layerHeader(size int64) *tar.Header {
	return &tar.Header{Name: layerFileName, Typeflag: tar.TypeReg, Mode: 0o644, Size: size,
		ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
}

func writeFile(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644,
		Size: int64(len(b)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// Layers returns the layers of image artifact d, or none when d is not
// stored by layers (a whole saved tar, or a folder's artifact). It reads
// the index without verifying d's digest: use it to decide what to ship
// or keep, and OpenImage (which verifies) to load.
func (s *Store) Layers(d string) ([]Layer, error) {
	rc, err := s.Reader(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		return nil, fmt.Errorf("layers of %s: %w", d, err)
	}
	idx, err := readIndex(tar.NewReader(gz), d)
	return idx.Layers, err
}

// PullRef returns the registry reference image artifact d is pulled by
// (PutPulled), or "" for an image that travels through Shoal.
func (s *Store) PullRef(d string) (string, error) {
	rc, err := s.Reader(d)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", d, err)
	}
	idx, err := readIndex(tar.NewReader(gz), d)
	return idx.Pull, err
}

// PutPulled stores the image artifact of image d (stored by PutImage) as
// it is when the image travels through a registry: its manifests and
// config, and ref to pull it by (dockerrt.Push) instead of its layers.
// Its digest differs from d's; hosts given it pull ref.
func (s *Store) PutPulled(ctx context.Context, d, ref string) (Artifact, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n") {
		return Artifact{}, fmt.Errorf("put pulled image %s: bad reference %q", d, ref)
	}
	rc, err := s.OpenTar(ctx, d)
	if err != nil {
		return Artifact{}, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	idx, err := readIndex(tr, d)
	if err != nil {
		return Artifact{}, err
	}
	if idx.Layers == nil {
		return Artifact{}, fmt.Errorf("put pulled image %s: not an image stored by layer", d)
	}
	ij, err := json.Marshal(imageIndex{Version: 1, Pull: ref})
	if err != nil {
		return Artifact{}, err
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	if err := writeFile(tw, imageIndexName, ij); err != nil {
		return Artifact{}, err
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Artifact{}, fmt.Errorf("put pulled image %s: %w", d, err)
		}
		if err := tw.WriteHeader(h); err != nil {
			return Artifact{}, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return Artifact{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Artifact{}, err
	}
	return s.PutTar(ctx, &out)
}

// readIndex reads the first entry of tr: the index of an image artifact,
// or something else (a zero index).
func readIndex(tr *tar.Reader, d string) (imageIndex, error) {
	h, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return imageIndex{}, nil
	}
	if err != nil {
		return imageIndex{}, fmt.Errorf("image %s: %w", d, err)
	}
	if h.Name != imageIndexName {
		return imageIndex{}, nil
	}
	var idx imageIndex
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&idx); err != nil {
		return imageIndex{}, fmt.Errorf("image %s: %s: %w", d, imageIndexName, err)
	}
	if idx.Version != 1 {
		return imageIndex{}, fmt.Errorf("image %s: %s version %d, want 1", d, imageIndexName, idx.Version)
	}
	for _, l := range idx.Layers {
		if !ValidDigest(l.Artifact) || !ValidDigest(l.DiffID) || l.Size < 0 || l.Path == "" {
			return imageIndex{}, fmt.Errorf("image %s: %s: bad layer %+v", d, imageIndexName, l)
		}
	}
	if idx.Layers == nil && idx.Pull == "" {
		idx.Layers = []Layer{} // an image of no layer is still one stored by layer
	}
	return idx, nil
}

// Missing returns the digests among d and, for an image artifact, its
// layers' artifacts that the store does not hold: what a store that
// mirrors another (a follower of a cluster, an agent) must fetch for d to
// be usable. d comes first when it is missing (its layers are known only
// once it is held).
func (s *Store) Missing(d string) ([]string, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	if !s.Has(d) {
		return []string{d}, nil
	}
	layers, err := s.Layers(d)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, l := range layers {
		if !seen[l.Artifact] && !s.Has(l.Artifact) {
			out = append(out, l.Artifact)
		}
		seen[l.Artifact] = true
	}
	return out, nil
}

// OpenImage returns the tar stream `docker load` reads for image artifact
// d: d as it is when it is a whole saved tar, else d's entries with each
// layer's file filled from its artifact, except the first held layers,
// which an engine that holds them does not read (it finds each layer by
// the chain of diff IDs up to it) and which are left empty. Every artifact
// read is verified (OpenTar), and each layer's bytes against its diff ID:
// a mismatch ends the stream with an error, so the load fails. The
// caller closes the stream.
func (s *Store) OpenImage(ctx context.Context, d string, held int) (io.ReadCloser, error) {
	rc, err := s.OpenTar(ctx, d)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(rc)
	idx, err := readIndex(tr, d)
	if err != nil {
		rc.Close()
		return nil, err
	}
	if idx.Pull != "" {
		rc.Close()
		return nil, fmt.Errorf("image %s is pulled from %s, not loaded", d, idx.Pull)
	}
	layers := idx.Layers
	if layers == nil {
		rc.Close()
		return s.OpenTar(ctx, d)
	}
	byPath := map[string]Layer{}
	for i, l := range layers {
		if i >= held {
			byPath[l.Path] = l
		}
	}
	pr, pw := io.Pipe()
	go func() {
		defer rc.Close()
		tw := tar.NewWriter(pw)
		err := s.joinImage(ctx, tr, tw, byPath)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// joinImage copies the entries of tr to tw, filling the files of layers.
func (s *Store) joinImage(ctx context.Context, tr *tar.Reader, tw *tar.Writer, layers map[string]Layer) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		l, ok := layers[path.Clean(h.Name)]
		if !ok {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
			continue
		}
		h.Size = l.Size
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if err := s.copyLayer(ctx, tw, l); err != nil {
			return fmt.Errorf("layer %s (%s): %w", l.DiffID, l.Artifact, err)
		}
	}
}

// copyLayer writes the layer tar of l to w, verified.
func (s *Store) copyLayer(ctx context.Context, w io.Writer, l Layer) error {
	rc, err := s.OpenTar(ctx, l.Artifact)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if h.Name != layerFileName || h.Size != l.Size {
		return fmt.Errorf("%w: artifact holds %q of %d bytes, want %s of %d", ErrDigestMismatch, h.Name, h.Size, layerFileName, l.Size)
	}
	sum := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, sum), tr); err != nil {
		return err
	}
	if got := formatDigest(sum.Sum(nil)); got != l.DiffID {
		return fmt.Errorf("%w: layer bytes hash to %s", ErrDigestMismatch, got)
	}
	return nil
}
