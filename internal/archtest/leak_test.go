package archtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// leakCheck is the call that each package with tests makes from its TestMain, so that a
// goroutine outliving the tests fails the run (docs/ARCHITECTURE.md, "Tests").
const leakCheck = "goleak.VerifyTestMain("

// testPkg is the part of `go list -json` output the leak rule needs.
type testPkg struct {
	ImportPath   string
	Dir          string
	TestGoFiles  []string
	XTestGoFiles []string
}

// withTests lists the packages of the module that have test files.
func withTests(t *testing.T) []testPkg {
	t.Helper()
	var pkgs []testPkg
	goList(t, "ImportPath,Dir,TestGoFiles,XTestGoFiles", func(p testPkg) {
		if len(p.TestGoFiles)+len(p.XTestGoFiles) > 0 {
			pkgs = append(pkgs, p)
		}
	})
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages with tests; expected the whole module", len(pkgs))
	}
	return pkgs
}

// leakCheckMissing reports every package none of whose test files calls leakCheck;
// read returns a file's content.
func leakCheckMissing(pkgs []testPkg, read func(path string) ([]byte, error)) ([]string, error) {
	var bad []string
	for _, p := range pkgs {
		found := false
		for _, f := range append(append([]string(nil), p.TestGoFiles...), p.XTestGoFiles...) {
			b, err := read(filepath.Join(p.Dir, f))
			if err != nil {
				return nil, fmt.Errorf("read test file: %w", err)
			}
			if bytes.Contains(b, []byte(leakCheck)) {
				found = true
				break
			}
		}
		if !found {
			bad = append(bad, fmt.Sprintf("%s has tests but no leak check: add a TestMain calling %sm) (see internal/lb/main_test.go)", short(p.ImportPath), leakCheck))
		}
	}
	sort.Strings(bad)
	return bad, nil
}

func TestEveryPackageWithTestsChecksForLeaks(t *testing.T) {
	bad, err := leakCheckMissing(withTests(t), os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range bad {
		t.Error(v)
	}
}

// TestLeakRuleCatchesAMissingCheck keeps the rule honest on made-up packages: one with
// the check in an external test file, one without it.
func TestLeakRuleCatchesAMissingCheck(t *testing.T) {
	files := map[string]string{
		"/a/a_test.go":    "package a\nfunc TestA(t *testing.T) {}\n",
		"/a/main_test.go": "package a_test\nfunc TestMain(m *testing.M) { goleak.VerifyTestMain(m) }\n",
		"/b/b_test.go":    "package b\nfunc TestMain(m *testing.M) { os.Exit(m.Run()) }\n",
	}
	read := func(path string) ([]byte, error) {
		s, ok := files[path]
		if !ok {
			return nil, os.ErrNotExist
		}
		return []byte(s), nil
	}
	pkgs := []testPkg{
		{ImportPath: module + "/internal/a", Dir: "/a", TestGoFiles: []string{"a_test.go"}, XTestGoFiles: []string{"main_test.go"}},
		{ImportPath: module + "/internal/b", Dir: "/b", TestGoFiles: []string{"b_test.go"}},
	}
	bad, err := leakCheckMissing(pkgs, read)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || !strings.HasPrefix(bad[0], "internal/b has tests but no leak check") {
		t.Errorf("violations = %q; want internal/b only", bad)
	}
}
