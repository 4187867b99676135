package release

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// savedImage writes a saved tar in the legacy layout of `docker save`
// with one layer per body (each a tar of one file), in order.
func savedImage(t *testing.T, bodies ...string) (raw []byte, layerTars [][]byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var paths, diffs []string
	for i, body := range bodies {
		lt := imageTar(t, map[string]string{fmt.Sprintf("file%d", i): body})
		layerTars = append(layerTars, lt)
		sum := sha256.Sum256(lt)
		id := hex.EncodeToString(sum[:])
		p := id + "/layer.tar"
		paths = append(paths, p)
		diffs = append(diffs, `"sha256:`+id+`"`)
		tw.WriteHeader(&tar.Header{Name: id + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(lt))})
		tw.Write(lt)
	}
	cfg := `{"rootfs":{"type":"layers","diff_ids":[` + strings.Join(diffs, ",") + `]}}`
	csum := sha256.Sum256([]byte(cfg))
	cname := hex.EncodeToString(csum[:]) + ".json"
	manifest := fmt.Sprintf(`[{"Config":%q,"RepoTags":["shoal/app:x"],"Layers":["%s"]}]`, cname, strings.Join(paths, `","`))
	for _, f := range []struct{ name, body string }{{cname, cfg}, {"manifest.json", manifest}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body))})
		io.WriteString(tw, f.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), layerTars
}

// loadTar reads the tar OpenImage gives and returns each file's bytes by name.
func loadTar(t *testing.T, s *Store, d string, held int) (map[string][]byte, error) {
	t.Helper()
	rc, err := s.OpenImage(context.Background(), d, held)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return out, err
		}
		out[h.Name] = b
	}
}

func TestPutImageByLayers(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	base := strings.Repeat("base layer ", 1000)
	raw1, lt1 := savedImage(t, base, "app v1")
	v1, err := s.PutImage(ctx, bytes.NewReader(raw1))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := s.Layers(v1.Digest)
	if err != nil || len(layers) != 2 {
		t.Fatalf("Layers = %+v, %v; want 2", layers, err)
	}
	for i, l := range layers {
		sum := sha256.Sum256(lt1[i])
		if l.DiffID != DigestPrefix+hex.EncodeToString(sum[:]) || l.Size != int64(len(lt1[i])) || !s.Has(l.Artifact) {
			t.Errorf("layer %d = %+v", i, l)
		}
	}
	// The image artifact is small: the layers are elsewhere.
	if v1.Size > 2048 {
		t.Errorf("image artifact is %d bytes, want the manifests only", v1.Size)
	}
	files, err := loadTar(t, s, v1.Digest, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		if !bytes.Equal(files[l.Path], lt1[i]) {
			t.Errorf("OpenImage: %s has %d bytes, want layer %d's %d", l.Path, len(files[l.Path]), i, len(lt1[i]))
		}
	}
	if _, ok := files["manifest.json"]; !ok || files[imageIndexName] != nil {
		t.Errorf("OpenImage entries: %v", keys(files))
	}
	// Held layers are left empty.
	files, err = loadTar(t, s, v1.Digest, 1)
	if err != nil || len(files[layers[0].Path]) != 0 || !bytes.Equal(files[layers[1].Path], lt1[1]) {
		t.Fatalf("OpenImage held=1: %v, layer sizes %d %d", err, len(files[layers[0].Path]), len(files[layers[1].Path]))
	}

	// v2 changes the app's layer only: it shares the base's artifact.
	raw2, _ := savedImage(t, base, "app v2")
	v2, err := s.PutImage(ctx, bytes.NewReader(raw2))
	if err != nil {
		t.Fatal(err)
	}
	layers2, _ := s.Layers(v2.Digest)
	if len(layers2) != 2 || layers2[0].Artifact != layers[0].Artifact || layers2[1].Artifact == layers[1].Artifact {
		t.Fatalf("v2 layers %+v, v1 %+v", layers2, layers)
	}

	// Another store that holds v1 lacks only v2's app layer.
	mirror := openStore(t)
	for _, d := range []string{v1.Digest, layers[0].Artifact, layers[1].Artifact, v2.Digest} {
		rc, _ := s.Reader(d)
		if _, err := mirror.Put(ctx, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	if m, err := mirror.Missing(v2.Digest); err != nil || len(m) != 1 || m[0] != layers2[1].Artifact {
		t.Errorf("Missing(v2) = %v, %v; want [%s]", m, err, layers2[1].Artifact)
	}
	if m, _ := mirror.Missing(v1.Digest); len(m) != 0 {
		t.Errorf("Missing(v1) = %v, want none", m)
	}
	if m, _ := openStore(t).Missing(v1.Digest); len(m) != 1 || m[0] != v1.Digest {
		t.Errorf("Missing of an empty store = %v", m)
	}

	// Pruning to v2 keeps its layers, drops v1 and v1's app layer.
	gone, err := s.Prune([]string{v2.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 2 || s.Has(v1.Digest) || s.Has(layers[1].Artifact) || !s.Has(layers[0].Artifact) || !s.Has(layers2[1].Artifact) {
		t.Errorf("Prune removed %v", gone)
	}
	if _, err := loadTar(t, s, v2.Digest, 0); err != nil {
		t.Errorf("v2 after prune: %v", err)
	}
}

func TestOpenImageRefusesDamagedLayer(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	raw, _ := savedImage(t, "one", "two")
	a, err := s.PutImage(ctx, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := s.Layers(a.Digest)
	// Replace layer 1's file with another valid artifact's bytes.
	other, err := s.PutTar(ctx, bytes.NewReader(imageTar(t, map[string]string{"x": "y"})))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(other.Path)
	if err := os.WriteFile(s.Path(layers[1].Artifact), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = loadTar(t, s, a.Digest, 0)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Digest != layers[1].Artifact {
		t.Fatalf("OpenImage of a damaged layer: %v, want a CorruptError naming %s", err, layers[1].Artifact)
	}
	if s.Has(layers[1].Artifact) {
		t.Error("the damaged layer was not moved aside")
	}
	if m, _ := s.Missing(a.Digest); len(m) != 1 || m[0] != layers[1].Artifact {
		t.Errorf("Missing after the damage = %v", m)
	}
}

// A saved tar stored whole, as before layers (PutTar), still opens as it is.
func TestOpenImageOfAWholeTar(t *testing.T) {
	s := openStore(t)
	raw, _ := savedImage(t, "one")
	a, err := s.PutTar(context.Background(), bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if l, err := s.Layers(a.Digest); err != nil || l != nil {
		t.Fatalf("Layers of a whole tar = %v, %v", l, err)
	}
	rc, err := s.OpenImage(context.Background(), a.Digest, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("OpenImage of a whole tar: %d bytes, %v", len(got), err)
	}
	// A tar with no manifest.json is stored whole by PutImage.
	plain := imageTar(t, map[string]string{"a": "b"})
	b, err := s.PutImage(context.Background(), bytes.NewReader(plain))
	sum := sha256.Sum256(plain)
	if err != nil || b.Digest != DigestPrefix+hex.EncodeToString(sum[:]) {
		t.Fatalf("PutImage of a plain tar: %+v %v", b, err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// An image that travels through a registry keeps its manifests and the
// reference to pull, and no layer.
func TestPutPulled(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	raw, _ := savedImage(t, "one", "two")
	a, err := s.PutImage(ctx, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	ref := "127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64)
	p, err := s.PutPulled(ctx, a.Digest, ref)
	if err != nil || p.Digest == a.Digest {
		t.Fatalf("PutPulled = %+v, %v", p, err)
	}
	if got, err := s.PullRef(p.Digest); err != nil || got != ref {
		t.Errorf("PullRef = %q, %v; want %q", got, err, ref)
	}
	if got, err := s.PullRef(a.Digest); err != nil || got != "" {
		t.Errorf("PullRef of a layered image = %q, %v", got, err)
	}
	if l, err := s.Layers(p.Digest); err != nil || len(l) != 0 {
		t.Errorf("Layers of a pulled image = %v, %v", l, err)
	}
	if m, err := s.Missing(p.Digest); err != nil || len(m) != 0 {
		t.Errorf("Missing of a pulled image = %v, %v", m, err)
	}
	rc, err := s.OpenTar(ctx, p.Digest)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		files[h.Name] = true
	}
	rc.Close()
	if !files["manifest.json"] || !files[imageIndexName] {
		t.Errorf("pulled image artifact entries: %v", files)
	}
	if _, err := s.OpenImage(ctx, p.Digest, 0); err == nil || !strings.Contains(err.Error(), "pulled from") {
		t.Errorf("OpenImage of a pulled image: %v", err)
	}
	if _, err := s.PutPulled(ctx, a.Digest, "bad ref"); err == nil {
		t.Error("a reference with a space was taken")
	}
}
