package release

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var maliciousTars = map[string][]tarEnt{
	"dotdot":         {{name: "../evil", body: "x"}},
	"nested dotdot":  {{name: "a/../../evil", body: "x"}},
	"absolute":       {{name: "/tmp/evil", body: "x"}},
	"abs symlink":    {{name: "l", typ: tar.TypeSymlink, link: "/etc"}},
	"escape symlink": {{name: "a/l", typ: tar.TypeSymlink, link: "../../x"}},
	"write via link": {{name: "l", typ: tar.TypeSymlink, link: "."}, {name: "l/f", body: "x"}},
	"hardlink":       {{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}},
	"device":         {{name: "dev", typ: tar.TypeChar}},
	"duplicate":      {{name: "f", body: "1"}, {name: "f", body: "2"}},
	"link then file": {{name: "f", typ: tar.TypeSymlink, link: "g"}, {name: "f", body: "x"}},
	"chain of links": {
		{name: "deep/", typ: tar.TypeDir},
		{name: "deep/x", typ: tar.TypeSymlink, link: ".."},
		{name: "deep/x/y/l", typ: tar.TypeSymlink, link: "../../.."},
	},
	"links through links": chainEscape(),
	"link loop":           {{name: "a", typ: tar.TypeSymlink, link: "b/x"}, {name: "b", typ: tar.TypeSymlink, link: "a/y"}},
}

// fuzzLimits are small, so the fuzzer reaches them.
var fuzzLimits = Limits{MaxBytes: 1 << 20, MaxEntries: 1000}

// chainEscape is the reported attack: d1/.../d10/b points back at the root, which
// looks inside; passwd goes through b and then up eleven times, which a lexical check
// sees as "etc/passwd" inside the tree, and which resolves to /etc/passwd from any
// directory up to eleven levels deep.
func chainEscape() []tarEnt {
	deep := "d1/d2/d3/d4/d5/d6/d7/d8/d9/d10"
	return []tarEnt{
		{name: deep + "/", typ: tar.TypeDir},
		{name: deep + "/b", typ: tar.TypeSymlink, link: strings.Repeat("../", 9) + ".."},
		{name: "passwd", typ: tar.TypeSymlink, link: deep + "/b/" + strings.Repeat("../", 11) + "etc/passwd"},
	}
}

// sparseBomb is a PAX GNU sparse 0.1 file of one data byte that declares 1 TiB.
func sparseBomb(t testing.TB) []byte {
	rec := func(k, v string) string {
		n := len(k) + len(v) + 3
		for len(fmt.Sprintf("%d %s=%s\n", n, k, v)) != n {
			n++
		}
		return fmt.Sprintf("%d %s=%s\n", n, k, v)
	}
	pax := rec("GNU.sparse.numblocks", "1") + rec("GNU.sparse.map", "0,1") + rec("GNU.sparse.size", "1099511627776")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "pax", Typeflag: tar.TypeReg, Size: int64(len(pax)), Mode: 0o644, Format: tar.FormatUSTAR})
	tw.Write([]byte(pax))
	tw.WriteHeader(&tar.Header{Name: "bomb", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644, Format: tar.FormatUSTAR})
	tw.Write([]byte("x"))
	tw.Close()
	b := buf.Bytes()
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func TestExtractRejectsMaliciousTars(t *testing.T) {
	cases := map[string][]byte{"sparse bomb": sparseBomb(t)}
	for name, ents := range maliciousTars {
		cases[name] = craftTar(t, ents)
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			sandbox := t.TempDir()
			dest := filepath.Join(sandbox, "dest")
			if err := os.Mkdir(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			err := extractTar(context.Background(), bytes.NewReader(raw), dest, Limits{})
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Fatalf("err = %v, want ErrUnsafeEntry", err)
			}
			assertOnly(t, sandbox, []string{"dest"})
		})
	}
}

func TestStoreUnpackRejectsMaliciousArtifact(t *testing.T) {
	s := openStore(t)
	// Bypass Put's validation: write a malicious artifact under its true digest.
	raw := craftTar(t, maliciousTars["dotdot"])
	d := formatDigest(sha256Sum(raw))
	if err := os.WriteFile(s.Path(d), gzipBytes(t, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	err := s.Unpack(context.Background(), d, filepath.Join(parent, "rel"))
	if !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("err = %v", err)
	}
	assertOnly(t, parent, nil)
}

func FuzzExtract(f *testing.F) {
	f.Add(craftTar(f, []tarEnt{{name: "a/", typ: tar.TypeDir}, {name: "a/b", body: "x"}, {name: "l", typ: tar.TypeSymlink, link: "a/b"}}))
	for _, ents := range maliciousTars {
		f.Add(craftTar(f, ents))
	}
	f.Add([]byte("garbage"))
	f.Add(sparseBomb(f))
	f.Add(hugeHeader(f, 5<<30))
	f.Add(craftTar(f, []tarEnt{{name: "big", body: strings.Repeat("z", 2<<20)}}))
	f.Add(craftTar(f, []tarEnt{{name: "fifo", typ: tar.TypeFifo}, {name: "blk", typ: tar.TypeBlock}}))
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		sandbox, err := os.MkdirTemp(base, "")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(sandbox)
		dest := filepath.Join(sandbox, "dest")
		if err := os.Mkdir(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		errExtract := extractTar(context.Background(), bytes.NewReader(data), dest, fuzzLimits)
		errScan := scanTar(context.Background(), bytes.NewReader(data), fuzzLimits)
		if errors.Is(errScan, ErrUnsafeEntry) && errExtract == nil {
			t.Fatalf("scan rejects (%v) but extract accepts", errScan)
		}
		var total int64
		filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				fi, _ := d.Info()
				total += fi.Size()
			}
			return nil
		})
		if total > fuzzLimits.MaxBytes {
			t.Fatalf("unpacked %d bytes, over the limit of %d", total, fuzzLimits.MaxBytes)
		}
		// Nothing outside dest, and every link inside dest stays inside.
		ents, err := os.ReadDir(sandbox)
		if err != nil || len(ents) != 1 || ents[0].Name() != "dest" {
			t.Fatalf("sandbox holds %v (%v)", ents, err)
		}
		filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			target, _ := os.Readlink(p)
			rel, _ := filepath.Rel(dest, p)
			if !linkInside(filepath.ToSlash(rel), target) {
				t.Fatalf("link %s -> %s escapes", rel, target)
			}
			real, err := filepath.EvalSymlinks(p)
			if err == nil && !strings.HasPrefix(real, dest) {
				t.Fatalf("link %s resolves to %s outside dest", rel, real)
			}
			return nil
		})
		// Restore write bits so t.TempDir cleanup works for non-root runs.
		filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"version":1,"builds":{"sha256:` + strings.Repeat("a", 64) + `":{"digest":"sha256:` + strings.Repeat("b", 64) + `"}}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"builds":{"x":{"digest":"y"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := parseIndex(b)
		if err != nil {
			return
		}
		for k, e := range idx.Builds {
			if !ValidDigest(k) || !ValidDigest(e.Digest) {
				t.Fatalf("invalid entry kept: %q -> %q", k, e.Digest)
			}
		}
	})
}
