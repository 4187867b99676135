package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// wireEnds are the packages on either end of the admin API, of the agent's API, of the
// fleet's join protocol (pki) and of its hello (fleet): the server's parts that fill and encode the answers and
// decode the requests, and the clients. Their wire types live in internal/api, the one
// vocabulary (docs/ARCHITECTURE.md, `api` row), so that the two ends cannot drift apart;
// none of them declares a struct with JSON tags.
var wireEnds = []string{"internal/client", "internal/adminapi", "internal/controller", "internal/lb",
	"internal/agent", "internal/agentclient", "internal/pki", "internal/fleet"}

// wireCopies reports every struct type (named or not) with a `json:` field tag in the
// non-test Go files of the packages pkgs, under the module root root.
func wireCopies(root string, pkgs []string) ([]string, error) {
	var bad []string
	for _, p := range pkgs {
		files, err := filepath.Glob(filepath.Join(root, p, "*.go"))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", p, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no Go files in %s", filepath.Join(root, p))
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
			if err != nil {
				return nil, fmt.Errorf("parse: %w", err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				st, ok := n.(*ast.StructType)
				if !ok {
					return true
				}
				for _, field := range st.Fields.List {
					if field.Tag != nil && strings.Contains(field.Tag.Value, `json:"`) {
						pos := fset.Position(st.Pos())
						bad = append(bad, fmt.Sprintf("%s:%d: a struct with JSON tags in %s; wire types belong in internal/api (docs/ARCHITECTURE.md)",
							filepath.ToSlash(filepath.Join(p, filepath.Base(pos.Filename))), pos.Line, p))
						break
					}
				}
				return true
			})
		}
	}
	sort.Strings(bad)
	return bad, nil
}

func TestWireTypesLiveInAPI(t *testing.T) {
	bad, err := wireCopies(filepath.Join("..", ".."), wireEnds)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range bad {
		t.Error(v)
	}
}

// TestWireRuleCatchesACopy keeps the rule honest on a made-up package: a named and an
// anonymous struct with JSON tags are reported, a struct without them is not.
func TestWireRuleCatchesACopy(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "internal", "x", "x.go"), "package x\n\n"+
		"type Answer struct {\n\tName string `json:\"name\"`\n}\n\n"+
		"type plain struct{ n int }\n\n"+
		"func f() any {\n\treturn struct {\n\t\tOK bool `json:\"ok\"`\n\t}{}\n}\n")
	writeFile(t, filepath.Join(root, "internal", "x", "x_test.go"), "package x\n\n"+
		"type fixture struct {\n\tName string `json:\"name\"`\n}\n")
	bad, err := wireCopies(root, []string{"internal/x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 2 || !strings.HasPrefix(bad[0], "internal/x/x.go:10: ") || !strings.HasPrefix(bad[1], "internal/x/x.go:3: ") {
		t.Errorf("reports %q, want the two structs of x.go (lines 3 and 10)", bad)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
