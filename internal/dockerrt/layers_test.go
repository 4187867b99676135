package dockerrt

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// twoLayers returns a build context of a FROM scratch image with two
// layers: /base (base) then /app (app).
func twoLayers(t *testing.T, base, app string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{
		{"Dockerfile", "FROM scratch\nCOPY base /base\nCOPY app /app\n"}, {"base", base}, {"app", app},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, f.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An image stored by layers loads into an engine that holds none of it,
// and into one that holds its first layer without that layer's artifact.
func TestEnsureLoadsOnlyTheLayersNotHeld(t *testing.T) {
	cli := connect(t)
	defer cli.Close()
	ctx := testenv.Context(t, 3*time.Minute)
	store, err := release.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	nonce := fmt.Sprint(time.Now().UnixNano())
	type built struct{ id, digest string }
	var imgs []built
	for _, v := range []string{"v1", "v2"} {
		id, ref, err := Build(ctx, cli, bytes.NewReader(twoLayers(t, "base "+nonce, v+" "+nonce)),
			BuildOptions{App: "dockerrt-layers", Dockerfile: "Dockerfile"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		addRef(ref)
		rc, err := Save(ctx, cli, ref)
		if err != nil {
			t.Fatal(err)
		}
		a, err := store.PutImage(ctx, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, built{id, a.Digest})
	}
	l1, err := store.Layers(imgs[0].digest)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := store.Layers(imgs[1].digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(l1) != 2 || len(l2) != 2 || l1[0].Artifact != l2[0].Artifact || l1[1].Artifact == l2[1].Artifact {
		t.Fatalf("layers v1 %+v, v2 %+v: want a shared base and two app layers", l1, l2)
	}
	for _, b := range imgs {
		if _, err := cli.ImageRemove(ctx, b.id, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(ctx, connect(t), Options{Scope: "layers-" + nonce})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	ensure := func(b built, layers []release.Layer) (int, error) {
		got := -1
		err := e.Ensure(ctx, SavedImage{
			ID: b.id, DiffIDs: release.DiffIDs(layers),
			Fetch: func(_ context.Context, held int) error { got = held; return nil },
			Open: func(ctx context.Context, held int) (io.ReadCloser, error) {
				return store.OpenImage(ctx, b.digest, held)
			},
		})
		return got, err
	}
	if held, err := ensure(imgs[0], l1); err != nil || held != 0 {
		t.Fatalf("Ensure v1 on an engine without it: held %d, %v; want 0, nil", held, err)
	}
	// v2's base is v1's: the engine holds it, so its artifact is not read.
	if err := store.Delete(l2[0].Artifact); err != nil {
		t.Fatal(err)
	}
	if held, err := ensure(imgs[1], l2); err != nil || held != 1 {
		t.Fatalf("Ensure v2 after v1: held %d, %v; want 1, nil", held, err)
	}
	for _, b := range imgs {
		if has, err := e.HasImage(ctx, b.id); err != nil || !has {
			t.Errorf("HasImage(%s) = %v, %v", b.id, has, err)
		}
	}
	// Held already: nothing fetched, nothing opened.
	if held, err := ensure(imgs[1], l2); err != nil || held != -1 {
		t.Errorf("Ensure of a held image: held %d, %v", held, err)
	}
}
