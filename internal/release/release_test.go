package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// writeTree creates files under dir: keys ending in "/" are directories, values starting
// with "->" are symlinks, everything else is a file with that content.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(body, "->"):
			if err := os.Symlink(strings.TrimPrefix(body, "->"), p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

var sampleTree = map[string]string{
	"main.js":             "console.log('hi')\n",
	"bin/run":             "#!/bin/sh\necho run\n",
	"lib/a/b.txt":         "bee",
	"lib/empty/":          "",
	"node_modules/x/i.js": "module.exports = 1",
	"node_modules/.bin/x": "->../x/i.js",
	".git/HEAD":           "ref: refs/heads/main",
	"link-to-lib":         "->lib",
}

func newTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, sampleTree)
	if err := os.Chmod(filepath.Join(dir, "bin/run"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBuildIsDeterministic(t *testing.T) {
	ctx := context.Background()
	a1, err := openStore(t).Build(ctx, BuildSpec{Dir: newTree(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Same content at another path, with other mtimes, in another store.
	dir2 := newTree(t)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(dir2, "main.js"), old, old); err != nil {
		t.Fatal(err)
	}
	a2, err := openStore(t).Build(ctx, BuildSpec{Dir: dir2})
	if err != nil {
		t.Fatal(err)
	}
	if a1.Digest != a2.Digest {
		t.Fatalf("same tree, different digests: %s vs %s", a1.Digest, a2.Digest)
	}
	if !ValidDigest(a1.Digest) {
		t.Fatalf("invalid digest %q", a1.Digest)
	}
	// A mode change and a content change each change the digest.
	if err := os.Chmod(filepath.Join(dir2, "main.js"), 0o600); err != nil {
		t.Fatal(err)
	}
	a3, err := openStore(t).Build(ctx, BuildSpec{Dir: dir2})
	if err != nil {
		t.Fatal(err)
	}
	if a3.Digest == a1.Digest {
		t.Fatal("mode change kept the digest")
	}
	if err := os.WriteFile(filepath.Join(dir2, "main.js"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	a4, err := openStore(t).Build(ctx, BuildSpec{Dir: dir2})
	if err != nil {
		t.Fatal(err)
	}
	if a4.Digest == a3.Digest {
		t.Fatal("content change kept the digest")
	}
}

func TestUnpackRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	src := newTree(t)
	a, err := s.Build(ctx, BuildSpec{Dir: src, Exclude: []string{"lib/empty"}})
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "rel")
	if err := s.Unpack(ctx, a.Digest, dest); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "lib/a/b.txt")); err != nil || string(b) != "bee" {
		t.Fatalf("lib/a/b.txt = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "bin/run")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/run mode: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dest, "node_modules/.bin/x")); err != nil || target != "../x/i.js" {
		t.Fatalf("symlink = %q, %v", target, err)
	}
	for _, gone := range []string{".git", "lib/empty"} {
		if _, err := os.Lstat(filepath.Join(dest, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s should be excluded: %v", gone, err)
		}
	}
	// The unpacked tree packs to the same digest (it is the same tree minus exclusions).
	again, err := openStore(t).Build(ctx, BuildSpec{Dir: dest})
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != a.Digest {
		t.Fatalf("repack digest %s != %s", again.Digest, a.Digest)
	}
	// Reuse: an existing dest is left as is.
	marker := filepath.Join(dest, "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Unpack(ctx, a.Digest, dest); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("second unpack replaced dest: %v", err)
	}
}

func TestUnpackVerifiesDigest(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	a, err := s.Build(ctx, BuildSpec{Dir: newTree(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Store the same bytes under a digest they do not have.
	forged := DigestPrefix + strings.Repeat("ab", 32)
	b, err := os.ReadFile(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(forged), b, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "rel")
	err = s.Unpack(ctx, forged, dest)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	assertOnly(t, filepath.Dir(dest), nil)
	if err := s.Unpack(ctx, DigestPrefix+strings.Repeat("0", 64), dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

// assertOnly fails unless dir holds exactly the names given.
func assertOnly(t *testing.T, dir string, names []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func TestFailedBuildStoresNothing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	dir := newTree(t)
	var log bytes.Buffer
	_, err := s.Build(ctx, BuildSpec{Dir: dir, Command: "mkdir -p out && echo partial > out/f && echo oops >&2 && exit 3", Output: "out", Log: &log})
	var be *BuildError
	if !errors.As(err, &be) || be.ExitCode != 3 {
		t.Fatalf("err = %v, want BuildError exit 3", err)
	}
	if !strings.Contains(log.String(), "oops") {
		t.Fatalf("build log = %q", log.String())
	}
	// Output missing after a "successful" command is an error too.
	if _, err := s.Build(ctx, BuildSpec{Dir: dir, Command: "true", Output: "nope"}); err == nil {
		t.Fatal("missing output accepted")
	}
	// Output with a symlink leaving the tree fails at pack time.
	if _, err := s.Build(ctx, BuildSpec{Dir: dir, Command: "ln -s /etc/passwd out/pw", Output: "out"}); !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("escaping symlink: err = %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v; want empty", list, err)
	}
	assertOnly(t, filepath.Join(s.Root(), "tmp"), nil)
}

func TestBuildCancelKillsCommand(t *testing.T) {
	s := openStore(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Build(ctx, BuildSpec{Dir: dir, Command: "touch started; sleep 300 & wait"})
		done <- err
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("build did not stop after cancel")
	}
}

func TestBuildOnceReusesArtifact(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	dir := newTree(t)
	runs := filepath.Join(t.TempDir(), "runs")
	spec := BuildSpec{
		Dir:     dir,
		Command: "echo run >> " + runs + " && mkdir -p dist && cp main.js dist/ && echo gen > generated.txt",
		Output:  "dist",
	}
	a1, built, err := s.BuildOnce(ctx, spec)
	if err != nil || !built {
		t.Fatalf("first BuildOnce: built=%v err=%v", built, err)
	}
	a2, built, err := s.BuildOnce(ctx, spec)
	if err != nil || built || a2.Digest != a1.Digest {
		t.Fatalf("second BuildOnce: built=%v err=%v digest %s vs %s", built, err, a2.Digest, a1.Digest)
	}
	if b, _ := os.ReadFile(runs); strings.Count(string(b), "run") != 1 {
		t.Fatalf("build ran %d times, want 1", strings.Count(string(b), "run"))
	}
	// A new command is a new key.
	spec2 := spec
	spec2.Command += " # v2"
	if _, built, err := s.BuildOnce(ctx, spec2); err != nil || !built {
		t.Fatalf("changed command: built=%v err=%v", built, err)
	}
	// A source change rebuilds; deleting the artifact rebuilds.
	if err := os.WriteFile(filepath.Join(dir, "main.js"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	a3, built, err := s.BuildOnce(ctx, spec)
	if err != nil || !built || a3.Digest == a1.Digest {
		t.Fatalf("source change: built=%v err=%v", built, err)
	}
	if err := s.Delete(a3.Digest); err != nil {
		t.Fatal(err)
	}
	if _, built, err := s.BuildOnce(ctx, spec); err != nil || !built {
		t.Fatalf("after delete: built=%v err=%v", built, err)
	}
}

func TestPutListPrune(t *testing.T) {
	ctx := context.Background()
	src := openStore(t)
	a, err := src.Build(ctx, BuildSpec{Dir: newTree(t)})
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	writeTree(t, dir2, map[string]string{"x": "y"})
	b, err := src.Build(ctx, BuildSpec{Dir: dir2})
	if err != nil {
		t.Fatal(err)
	}
	// Ship a to another store.
	dst := openStore(t)
	r, err := src.Reader(a.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dst.Put(ctx, r)
	r.Close()
	if err != nil || got.Digest != a.Digest || !dst.Has(a.Digest) {
		t.Fatalf("Put = %+v, %v", got, err)
	}
	list, err := src.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %v, %v", list, err)
	}
	removed, err := src.Prune([]string{b.Digest})
	if err != nil || len(removed) != 1 || removed[0] != a.Digest {
		t.Fatalf("Prune = %v, %v", removed, err)
	}
	if src.Has(a.Digest) || !src.Has(b.Digest) {
		t.Fatal("prune kept the wrong artifact")
	}
	// Put rejects garbage and unsafe tars, leaving nothing behind.
	if _, err := dst.Put(ctx, strings.NewReader("not gzip")); err == nil {
		t.Fatal("Put accepted garbage")
	}
	if _, err := dst.Put(ctx, bytes.NewReader(gzipBytes(t, craftTar(t, []tarEnt{{name: "../evil", body: "x"}})))); !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("Put unsafe: %v", err)
	}
	assertOnly(t, filepath.Join(dst.Root(), "tmp"), nil)
}

func TestSourceDigestExcludes(t *testing.T) {
	ctx := context.Background()
	dir := newTree(t)
	d1, err := SourceDigest(ctx, dir, []string{".shoal"})
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, dir, map[string]string{".shoal/state": "x", ".git/index": "y"})
	d2, err := SourceDigest(ctx, dir, []string{filepath.Join(dir, ".shoal")})
	if err != nil || d1 != d2 {
		t.Fatalf("excluded paths changed the digest: %s vs %s (%v)", d1, d2, err)
	}
	writeTree(t, dir, map[string]string{"new.txt": ""})
	if d3, _ := SourceDigest(ctx, dir, []string{".shoal"}); d3 == d1 {
		t.Fatal("a new file kept the digest")
	}
}

type tarEnt struct {
	name, body, link string
	typ              byte
	mode             int64
	pax              map[string]string
}

func craftTar(t testing.TB, ents []tarEnt) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: mode, Format: tar.FormatPAX, PAXRecords: e.pax}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}
