package release

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func imageTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPutTarAndOpenTar(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	raw := imageTar(t, map[string]string{"manifest.json": `[{"Config":"abc.json"}]`, "abc.json": "{}"})
	a, err := s.PutTar(ctx, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if a.Digest != DigestPrefix+hex.EncodeToString(sum[:]) || !s.Has(a.Digest) {
		t.Fatalf("digest %s, want the sha256 of the tar bytes", a.Digest)
	}
	rc, err := s.OpenTar(ctx, a.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("OpenTar gave %d bytes (%v), want the %d stored", len(got), err, len(raw))
	}
	// The same tar stored again is the same artifact.
	if b, err := s.PutTar(ctx, bytes.NewReader(raw)); err != nil || b.Digest != a.Digest {
		t.Errorf("second put: %v %v", b, err)
	}
	// An unsafe entry is refused and nothing is stored.
	bad := imageTar(t, map[string]string{"../escape": "x"})
	if _, err := s.PutTar(ctx, bytes.NewReader(bad)); !errors.Is(err, ErrUnsafeEntry) {
		t.Errorf("unsafe tar: %v", err)
	}
	// A stored file that is not its digest's is found and moved aside.
	other, err := s.PutTar(ctx, bytes.NewReader(imageTar(t, map[string]string{"x": "y"})))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.Path(other.Digest), s.Path(a.Digest)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenTar(ctx, a.Digest); !errors.Is(err, ErrCorrupt) {
		t.Errorf("OpenTar of a swapped file: %v, want ErrCorrupt", err)
	}
	if s.Has(a.Digest) {
		t.Error("the corrupt file is still stored under its digest")
	}
	if _, err := s.OpenTar(ctx, a.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenTar of a missing artifact: %v", err)
	}
}

func TestBuildWithImage(t *testing.T) {
	s := openStore(t)
	dir := newTree(t)
	raw := imageTar(t, map[string]string{"manifest.json": "[]"})
	calls := 0
	var sawContext []string
	spec := BuildSpec{Dir: dir, ImageKey: "Dockerfile", Image: func(ctx context.Context, bc io.Reader, log io.Writer) (io.ReadCloser, error) {
		calls++
		tr := tar.NewReader(bc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			sawContext = append(sawContext, h.Name)
		}
		return io.NopCloser(bytes.NewReader(raw)), nil
	}}
	a, built, err := s.BuildOnce(context.Background(), spec)
	if err != nil || !built {
		t.Fatalf("build: %v built=%v", err, built)
	}
	joined := strings.Join(sawContext, " ")
	if !strings.Contains(joined, "main.js") || strings.Contains(joined, ".git") {
		t.Errorf("build context %q", joined)
	}
	sum := sha256.Sum256(raw)
	if a.Digest != DigestPrefix+hex.EncodeToString(sum[:]) {
		t.Errorf("artifact %s is not the image tar", a.Digest)
	}
	// Unchanged source and key: no second image build.
	if _, built, err := s.BuildOnce(context.Background(), spec); err != nil || built || calls != 1 {
		t.Errorf("rebuild: %v built=%v calls=%d", err, built, calls)
	}
	// A new key (another Dockerfile, target or args) builds again.
	spec.ImageKey = "Dockerfile.prod"
	if _, built, err := s.BuildOnce(context.Background(), spec); err != nil || !built || calls != 2 {
		t.Errorf("new key: %v built=%v calls=%d", err, built, calls)
	}
	// A failing image build stores nothing and says why.
	spec.ImageKey = "broken"
	spec.Image = func(context.Context, io.Reader, io.Writer) (io.ReadCloser, error) {
		return nil, errors.New("docker build: step 2 failed")
	}
	if _, _, err := s.BuildOnce(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "step 2 failed") {
		t.Errorf("failed image build: %v", err)
	}
}
