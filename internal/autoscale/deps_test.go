package autoscale

import (
	"go/build"
	"strings"
	"testing"
)

// TestLeafPackage keeps the strategy a leaf: it imports no Shoal package,
// so the controller depends on it and never the other way round.
func TestLeafPackage(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/shoal-dev/shoal/") {
			t.Errorf("autoscale imports %s; it must stay a leaf", imp)
		}
	}
}
