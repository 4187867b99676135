package e2e

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestUpRefusesDamagedStoreAndRestores: an emptied or corrupted shoal.db
// stops shoal up with an error that names the file and the restore command
// (never a panic, never a fresh store); shoal restore brings back the last
// release from the automatic backup, and refuses while shoal up runs.
func TestUpRefusesDamagedStoreAndRestores(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 2)
	db := filepath.Join(dir, ".shoal", "shoal.db")
	bak := db + ".bak"

	u := startUp(t, bin, dir)
	if code, out := runShoal(t, bin, dir, "env", "set", "--secret", "API_KEY=s3cret"); code != 0 {
		t.Fatalf("env set: exit %d\n%s", code, out)
	}
	if code, out := runShoal(t, bin, dir, "restore", bak); code == 0 || !strings.Contains(out, "stop shoal up first") {
		t.Fatalf("restore while up runs: exit %d\n%s", code, out)
	}
	manual := filepath.Join(t.TempDir(), "manual.db")
	if code, out := runShoal(t, bin, dir, "backup", "-o", manual); code != 0 || !strings.Contains(out, "automatic backup") {
		t.Fatalf("backup while up runs: exit %d\n%s", code, out)
	}
	stopUp(t, u)

	good, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Clone(good)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 2 * os.Getpagesize(); i < len(garbage); i++ {
		garbage[i] = byte(rng.Uint32()) // every page but the two meta pages
	}
	for name, data := range map[string][]byte{"empty": nil, "garbage": garbage, "truncated": good[:3*os.Getpagesize()]} {
		if err := os.WriteFile(db, data, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := runShoal(t, bin, dir, "up")
		if code != 1 || strings.Contains(out, "panic") || !strings.Contains(out, db) || !strings.Contains(out, "shoal restore "+bak) {
			t.Errorf("%s store: shoal up exit %d, want 1 with an error naming %s and `shoal restore %s`:\n%s", name, code, db, bak, out)
		}
		if after, _ := os.ReadFile(db); !bytes.Equal(after, data) {
			t.Errorf("%s store: shoal up changed the damaged file", name)
		}
	}

	code, out := runShoal(t, bin, dir, "restore", bak)
	if code != 0 || !strings.Contains(out, "kept as "+db+".damaged-") {
		t.Fatalf("restore: exit %d\n%s", code, out)
	}
	u = startUp(t, bin, dir)
	// A fresh store would start at v1 with no override; the restored one
	// resumes v2, the release `env set` made.
	_, rels := runShoal(t, bin, dir, "releases")
	_, envs := runShoal(t, bin, dir, "env", "list")
	if u.release != "2" || !strings.Contains(rels, "v2 ") || !strings.Contains(envs, "API_KEY") {
		t.Errorf("after restore: shoal up runs v%s; releases:\n%s\nenv:\n%s", u.release, rels, envs)
	}
	stopUp(t, u)

	// The manual backup restores too, and a damaged backup is refused.
	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("junk"), 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runShoal(t, bin, dir, "restore", junk); code != 1 || !strings.Contains(out, junk) {
		t.Errorf("restore from junk: exit %d\n%s", code, out)
	}
	// Over the sound store restored above: kept as replaced, not damaged.
	if code, out := runShoal(t, bin, dir, "restore", manual); code != 0 || !strings.Contains(out, "kept as "+db+".replaced-") {
		t.Fatalf("restore from the manual backup over a sound store: exit %d, want the old file kept as %s.replaced-<time>\n%s", code, db, out)
	}
}

// TestUpStopsOnCorruptArtifact: a corrupted artifact stops shoal up with an
// error naming the release, the digest and the file (no crash loop); the
// next shoal up rebuilds the unchanged source to the same digest and runs.
func TestUpStopsOnCorruptArtifact(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 2)
	stopUp(t, startUp(t, bin, dir))

	arts, err := filepath.Glob(filepath.Join(dir, ".shoal", "artifacts", "artifacts", "sha256-*.tar.gz"))
	if err != nil || len(arts) != 1 {
		t.Fatalf("artifacts %v %v", arts, err)
	}
	b, err := os.ReadFile(arts[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 3; i < len(b)/3+32; i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(arts[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The unpacked tree of the first run would be reused as it is.
	if err := os.RemoveAll(filepath.Join(dir, ".shoal", "releases")); err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.TrimSuffix(strings.TrimPrefix(filepath.Base(arts[0]), "sha256-"), ".tar.gz")
	code, out := runShoal(t, bin, dir, "up")
	for _, want := range []string{"release v1", digest, arts[0], "corrupt"} {
		if code != 1 || !strings.Contains(out, want) || strings.Contains(out, "panic") {
			t.Fatalf("shoal up with a corrupt artifact: exit %d, want 1 and an error naming %q:\n%s", code, want, out)
		}
	}
	u := startUp(t, bin, dir)
	if u.release != "1" {
		t.Errorf("after the rebuild shoal up runs v%s, want v1", u.release)
	}
	stopUp(t, u)
}

// TestUpRefusesOversizedRelease: build.max_unpacked_size reaches the
// artifact store: a release over it is refused, naming the limit.
func TestUpRefusesOversizedRelease(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 1, 2)
	f, err := os.OpenFile(filepath.Join(dir, "shoal.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("build:\n  max_unpacked_size: 1KiB\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out := runShoal(t, bin, dir, "up")
	if code != 1 || !strings.Contains(out, "artifact too large") || !strings.Contains(out, "more than 1024 bytes") {
		t.Fatalf("shoal up over the size limit: exit %d, want 1 naming the limit:\n%s", code, out)
	}
}
