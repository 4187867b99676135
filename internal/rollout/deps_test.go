package rollout

import (
	"go/build"
	"strings"
	"testing"
)

// TestLeafPackage keeps the rollout logic a leaf: the controller imports
// it, never the other way round.
func TestLeafPackage(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/shoal-dev/shoal/") {
			t.Errorf("rollout imports %s; it must stay a leaf", imp)
		}
	}
}
