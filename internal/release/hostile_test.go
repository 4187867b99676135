package release

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hugeHeader is a tar whose only entry declares size bytes and carries none.
func hugeHeader(t testing.TB, size int64) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Size: size, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes() // the header only: the data never comes
}

// TestLinkChainRefusedAtPack: a build output whose links, each inside the tree
// on its own, chain out of it is refused, naming the link and its target.
func TestLinkChainRefusedAtPack(t *testing.T) {
	s := openStore(t)
	dir := t.TempDir()
	for _, e := range chainEscape() {
		p := filepath.Join(dir, e.name)
		switch e.typ {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(e.link, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if real, err := filepath.EvalSymlinks(filepath.Join(dir, "passwd")); err != nil || real != "/etc/passwd" {
		t.Fatalf("the test tree does not escape: %q %v", real, err)
	}
	_, err := s.Build(context.Background(), BuildSpec{Dir: dir})
	if !errors.Is(err, ErrUnsafeEntry) || !strings.Contains(err.Error(), `"passwd"`) || !strings.Contains(err.Error(), "etc/passwd") {
		t.Fatalf("Build = %v, want ErrUnsafeEntry naming passwd and its target", err)
	}
	if all, _ := s.List(); len(all) != 0 {
		t.Fatalf("stored %v", all)
	}

	// Links that resolve inside through other links still pack.
	ok := t.TempDir()
	writeTree(t, ok, map[string]string{"pkg/bin/cli.js": "x"})
	for name, target := range map[string]string{"node_modules/.bin/cli": "../../pkg/bin/cli.js", "lib": "pkg", "tool": "lib/bin/../bin/cli.js", "self": "."} {
		os.MkdirAll(filepath.Dir(filepath.Join(ok, name)), 0o755)
		if err := os.Symlink(target, filepath.Join(ok, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Build(context.Background(), BuildSpec{Dir: ok}); err != nil {
		t.Fatalf("in-tree links refused: %v", err)
	}
}

// TestLinkChainRefusedAtUnpack: a hostile artifact (stored under its true
// digest, bypassing Put) with such a chain unpacks nothing.
func TestLinkChainRefusedAtUnpack(t *testing.T) {
	s := openStore(t)
	raw := craftTar(t, chainEscape())
	d := formatDigest(sha256Sum(raw))
	if err := os.WriteFile(s.Path(d), gzipBytes(t, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	err := s.Unpack(context.Background(), d, filepath.Join(parent, "rel"))
	if !errors.Is(err, ErrUnsafeEntry) || !strings.Contains(err.Error(), "passwd") {
		t.Fatalf("Unpack = %v, want ErrUnsafeEntry naming passwd", err)
	}
	assertOnly(t, parent, nil)
	if _, err := s.Put(context.Background(), bytes.NewReader(gzipBytes(t, raw))); !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("Put = %v, want ErrUnsafeEntry", err)
	}
}

// TestUnpackLimits: an artifact over the byte or entry limit unpacks nothing,
// and a build over them stores nothing.
func TestUnpackLimits(t *testing.T) {
	ctx := context.Background()
	cases := map[string]struct {
		raw []byte
		lim Limits
	}{
		"bytes":          {craftTar(t, []tarEnt{{name: "a", body: strings.Repeat("a", 600)}, {name: "b", body: strings.Repeat("b", 600)}}), Limits{MaxBytes: 1000}},
		"entries":        {craftTar(t, []tarEnt{{name: "a"}, {name: "b"}, {name: "c"}, {name: "d/", typ: tar.TypeDir}}), Limits{MaxEntries: 3}},
		"default, 5 GiB": {hugeHeader(t, 5<<30), Limits{}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := openStore(t)
			s.SetLimits(c.lim)
			d := formatDigest(sha256Sum(c.raw))
			if err := os.WriteFile(s.Path(d), gzipBytes(t, c.raw), 0o644); err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			err := s.Unpack(ctx, d, filepath.Join(parent, "rel"))
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), d) {
				t.Fatalf("Unpack = %v, want ErrTooLarge naming the artifact", err)
			}
			assertOnly(t, parent, nil)
		})
	}

	s := openStore(t)
	s.SetLimits(Limits{MaxBytes: 1 << 20})
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(2 << 20) // a hole: no disk used, 2 MiB once packed and unpacked
	f.Close()
	if _, err := s.Build(ctx, BuildSpec{Dir: dir}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1048576") {
		t.Fatalf("Build = %v, want ErrTooLarge naming the limit", err)
	}
}

// TestCorruptArtifactNamedAndRebuilt: a stored artifact whose gzip is corrupt
// is reported with its digest and path, moved aside, never unpacked; a
// rebuild of the unchanged source stores the same digest again.
func TestCorruptArtifactNamedAndRebuilt(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	spec := BuildSpec{Dir: newTree(t)}
	a, _, err := s.BuildOnce(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 3; i < len(b)/3+16 && i < len(b)-8; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(a.Path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	dest := filepath.Join(parent, "rel")
	err = s.Unpack(ctx, a.Digest, dest)
	var ce *CorruptError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || !strings.Contains(err.Error(), a.Digest) || !strings.Contains(err.Error(), a.Path) {
		t.Fatalf("Unpack = %v, want a CorruptError naming %s and %s", err, a.Digest, a.Path)
	}
	assertOnly(t, parent, nil)
	if s.Has(a.Digest) {
		t.Fatal("the corrupt file is still stored under its digest")
	}
	if _, err := os.Stat(ce.MovedTo); err != nil {
		t.Fatalf("corrupt file not kept aside: %v", err)
	}
	if err := s.Unpack(ctx, a.Digest, dest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Unpack = %v, want ErrNotFound", err)
	}
	a2, built, err := s.BuildOnce(ctx, spec)
	if err != nil || !built || a2.Digest != a.Digest {
		t.Fatalf("rebuild = %+v built=%v %v", a2, built, err)
	}
	if err := s.Unpack(ctx, a.Digest, dest); err != nil {
		t.Fatal(err)
	}
}
