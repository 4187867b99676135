package adminapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/release"
)

// builtArtifact builds a small artifact in a store of its own, as `shoal
// deploy` does where it runs, and returns its digest and file bytes.
func builtArtifact(t *testing.T, content string) (string, []byte) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "index.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	arts, err := release.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := arts.Build(context.Background(), release.BuildSpec{Dir: src})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	return a.Digest, b
}

// TestArtifactUpload holds the artifact routes to their contract: HEAD
// says whether the daemon holds an artifact, PUT keeps only bytes whose
// digest is the URL's, GET streams them back whole.
func TestArtifactUpload(t *testing.T) {
	mux := http.NewServeMux()
	DeployRoutes(mux, newTestController(t))
	srv := httptest.NewServer(RequireToken("tok", mux))
	defer srv.Close()
	c := client.New(srv.URL, "tok")
	ctx := context.Background()
	d, data := builtArtifact(t, "v1\n")
	other, _ := builtArtifact(t, "v2\n")

	if held, err := c.HasArtifact(ctx, d); err != nil || held {
		t.Fatalf("HEAD before the upload: %v, %v; want 404", held, err)
	}
	if _, err := c.HasArtifact(ctx, "sha256:xyz"); !client.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("HEAD of a malformed digest: %v, want 400", err)
	}
	if err := c.UploadArtifact(ctx, "md5:1", bytes.NewReader(data), int64(len(data))); !client.IsStatus(err, http.StatusBadRequest) ||
		!strings.Contains(err.Error(), "invalid artifact digest") {
		t.Errorf("PUT to a malformed digest: %v, want 400", err)
	}

	// The bytes of one artifact under the digest of another: refused,
	// naming both, and neither is kept.
	err := c.UploadArtifact(ctx, other, bytes.NewReader(data), int64(len(data)))
	if !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), d) || !strings.Contains(err.Error(), other) ||
		!strings.Contains(err.Error(), "nothing kept") {
		t.Fatalf("PUT with the wrong digest: %v; want 400 naming %s and %s", err, d, other)
	}
	for _, dg := range []string{d, other} {
		if held, err := c.HasArtifact(ctx, dg); err != nil || held {
			t.Errorf("after the refused upload, HEAD %s: %v, %v; want not held", dg, held, err)
		}
	}
	if err := c.UploadArtifact(ctx, d, strings.NewReader("not gzip at all"), -1); !client.IsStatus(err, http.StatusBadRequest) ||
		!strings.Contains(err.Error(), "not a valid artifact") {
		t.Errorf("PUT of bytes that are no artifact: %v, want 400", err)
	}

	// The right bytes: kept, and streamed back whole.
	if err := c.UploadArtifact(ctx, d, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("PUT: %v", err)
	}
	if held, err := c.HasArtifact(ctx, d); err != nil || !held {
		t.Errorf("HEAD after the upload: %v, %v; want held", held, err)
	}
	if err := c.UploadArtifact(ctx, d, bytes.NewReader(data), -1); err != nil {
		t.Errorf("PUT of a held artifact again (chunked): %v", err)
	}
	var got bytes.Buffer
	if n, err := c.FetchArtifact(ctx, d, &got); err != nil || n != int64(len(data)) || !bytes.Equal(got.Bytes(), data) {
		t.Errorf("GET: %d bytes, %v; want the %d bytes uploaded", n, err, len(data))
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/artifacts/"+d, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ContentLength != int64(len(data)) {
		t.Errorf("GET Content-Length %d, want %d", resp.ContentLength, len(data))
	}
	if _, err := c.FetchArtifact(ctx, other, io.Discard); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("GET of an artifact not held: %v, want 404", err)
	}
}

// TestArtifactUploadTooLarge: a body declared larger than the limit is
// refused with 413 before it is read.
func TestArtifactUploadTooLarge(t *testing.T) {
	mux := http.NewServeMux()
	DeployRoutes(mux, newTestController(t))
	srv := httptest.NewServer(RequireToken("tok", mux))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := "sha256:" + strings.Repeat("0", 64)
	fmt.Fprintf(conn, "PUT /v1/artifacts/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Length: %d\r\n\r\n", d, int64(MaxArtifactUpload)+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "more than the 2147483648") {
		t.Errorf("PUT of %d bytes: %d %s, want 413", int64(MaxArtifactUpload)+1, resp.StatusCode, body)
	}
}

// TestLimitedBody: a body of exactly the limit passes; one byte more is
// caught, whatever the read sizes.
func TestLimitedBody(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 11, 100} {
		b := &limitedBody{r: iotest(bytes.Repeat([]byte("x"), n)), left: 10}
		got, err := io.ReadAll(b)
		switch {
		case n <= 10 && (err != nil || len(got) != n || b.over):
			t.Errorf("%d bytes, limit 10: read %d, %v, over %v; want all of it", n, len(got), err, b.over)
		case n > 10 && (err == nil || !b.over):
			t.Errorf("%d bytes, limit 10: read %d, %v, over %v; want refused", n, len(got), err, b.over)
		}
	}
}

// iotest returns a reader of b that returns 3 bytes at a time.
func iotest(b []byte) io.Reader { return &smallReads{b: b} }

type smallReads struct{ b []byte }

func (r *smallReads) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 3)], r.b)
	r.b = r.b[n:]
	return n, nil
}
