package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// uploadImage stores a saved image (`docker save`'s legacy layout) of
// one layer per body in ts's own store, as an upload of an image does,
// and returns the image artifact's digest and its layers.
func uploadImage(t *testing.T, ctx context.Context, ts *testServer, bodies ...string) (string, []release.Layer) {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	put := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	var paths []string
	for i, body := range bodies {
		var layer bytes.Buffer
		lw := tar.NewWriter(&layer)
		if err := lw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(lw, body)
		if err := lw.Close(); err != nil {
			t.Fatal(err)
		}
		p := fmt.Sprintf("l%d/layer.tar", i)
		paths = append(paths, `"`+p+`"`)
		put(p, layer.Bytes())
	}
	put("c.json", []byte(`{"rootfs":{"type":"layers"}}`))
	put("manifest.json", []byte(`[{"Config":"c.json","Layers":[`+strings.Join(paths, ",")+`]}]`))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := ts.s.arts.PutImage(ctx, &out)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := ts.s.arts.Layers(a.Digest)
	if err != nil || len(layers) != len(bodies) {
		t.Fatalf("layers of the image: %v, %v; want %d", layers, err, len(bodies))
	}
	return a.Digest, layers
}

// copyArtifact puts artifact d of from's store into to's, as it is (no
// layer with it), asked for as a deploy asks (so a follower does not
// prune it: no release names it).
func copyArtifact(t *testing.T, ctx context.Context, from, to *testServer, d string) {
	t.Helper()
	to.s.cl.arts.ask(d)
	rc, err := from.s.arts.Reader(d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := to.s.uploads.PutArtifact(ctx, d, rc); err != nil {
		t.Fatal(err)
	}
}

// lacks is what ts's store lacks of image d (release.Store.Missing).
func lacks(t *testing.T, ts *testServer, d string) []string {
	t.Helper()
	m, err := ts.s.arts.Missing(d)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHoldOnMajorityCoversLayers checks, with three real servers of one
// cluster, that the majority a release waits for holds the image
// artifact and every layer it names, not the index alone: a follower
// confirms once it holds them all (the image is in no release yet, so
// no sync round would copy its layers later); a layer that no majority
// can hold is a 503 naming each server and the layer it lacks, even
// when the followers already hold the index; and an image whose layer
// the leader lacks is left to the deploy to refuse.
func TestHoldOnMajorityCoversLayers(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	servers := startClusterServers(t, ctx)
	s1, s2, s3 := servers[0], servers[1], servers[2]

	// s3 refusing every artifact: the majority is s1 and s2, so s2
	// must hold the image with its layers once the wait returns.
	repair3 := breakArtifacts(t, s3)
	d, _ := uploadImage(t, ctx, s1, "base layer v1\n", "app layer v1\n")
	if err := s1.s.holdOnMajority(ctx, d); err != nil {
		t.Fatalf("s2 taking the image, s3 refusing: %v", err)
	}
	if m := lacks(t, s2, d); len(m) != 0 {
		t.Fatalf("s2 confirmed image %s but lacks %v", d, m)
	}
	repair3()

	// The followers hold the index of a second image but cannot store
	// its layers: the index alone is no majority, and the error says
	// who lacks which layer.
	d, layers := uploadImage(t, ctx, s1, "base layer v2\n", "app layer v2\n")
	copyArtifact(t, ctx, s1, s2, d)
	copyArtifact(t, ctx, s1, s3, d)
	repair2 := breakArtifacts(t, s2)
	breakArtifacts(t, s3) // left broken to the end
	err := s1.s.holdOnMajority(ctx, d)
	first := "layer " + layers[0].Artifact + " of image " + d
	if err == nil || !errors.Is(err, adminapi.ErrUnavailable) ||
		!strings.Contains(err.Error(), "held by 1 of the cluster's 3 servers") ||
		!strings.Contains(err.Error(), "s2 (") || !strings.Contains(err.Error(), "s3 (") ||
		strings.Count(err.Error(), first) != 2 || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("the followers holding the index alone: %v; want a 503 naming s2 and s3 and %s", err, first)
	}
	for _, ts := range []*testServer{s2, s3} {
		if m := lacks(t, ts, d); len(m) != 2 {
			t.Fatalf("%s lacks %v, want both layers", ts.s.cl.node.ID(), m)
		}
	}

	// s2 repaired: it copies the layers it lacks, and is the majority.
	repair2()
	if err := s1.s.holdOnMajority(ctx, d); err != nil {
		t.Fatalf("s2 repaired, s3 refusing: %v", err)
	}
	if m := lacks(t, s2, d); len(m) != 0 {
		t.Fatalf("s2 confirmed image %s but lacks %v", d, m)
	}
	if m := lacks(t, s3, d); len(m) != 2 {
		t.Fatalf("s3, still refusing, lacks %v; want both layers", m)
	}

	// The leader lacking a layer waits for no one: the deploy refuses
	// the image itself (the controller checks its layers).
	if err := s1.s.arts.Delete(layers[1].Artifact); err != nil {
		t.Fatal(err)
	}
	if err := s1.s.holdOnMajority(ctx, d); err != nil {
		t.Fatalf("a layer the leader lacks (the deploy reports it): %v", err)
	}
}
