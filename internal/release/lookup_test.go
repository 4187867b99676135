package release

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestLookupBuildsNothing checks that Lookup answers what BuildOnce would
// return without running the build, and notices a source change.
func TestLookupBuildsNothing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	dir := newTree(t)
	runs := filepath.Join(t.TempDir(), "runs")
	spec := BuildSpec{Dir: dir, Command: "echo run >> " + runs + " && mkdir -p dist && cp main.js dist/", Output: "dist"}
	if _, found, err := s.Lookup(ctx, spec); err != nil || found {
		t.Fatalf("Lookup before any build: found %v, %v", found, err)
	}
	a, _, err := s.BuildOnce(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if d, found, err := s.Lookup(ctx, spec); err != nil || !found || d != a.Digest {
		t.Fatalf("Lookup after the build: %s found %v, %v; want %s", d, found, err, a.Digest)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.js"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, found, err := s.Lookup(ctx, spec); err != nil || found {
		t.Fatalf("Lookup after a source change: %s found %v, %v; want not found", d, found, err)
	}
	if b, _ := os.ReadFile(runs); string(b) != "run\n" {
		t.Errorf("build ran %q, want once", b)
	}
}
