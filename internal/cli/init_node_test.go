package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/config"
)

// npmInitPackage is what `npm init -y` writes: its "main" names a file
// that does not exist until someone writes it.
const npmInitPackage = `{"name":"flows","version":"1.0.0","main":"index.js",
 "scripts":{"test":"echo \"Error: no test specified\" && exit 1"},"dependencies":{%s}}`

func TestInitNodeEntry(t *testing.T) {
	pkg := func(deps string) string { return strings.Replace(npmInitPackage, "%s", deps, 1) }
	tests := []struct {
		name    string
		files   map[string]string
		wantRun string
		// missing is the file the written shoal.yaml and stderr must
		// report as missing; "" means no warning at all.
		missing string
		note    string // also in the written file
	}{
		{
			name: "installed package with a bin map (node-red)",
			files: map[string]string{"package.json": pkg(`"node-red":"^4.0.0"`),
				"node_modules/node-red/package.json": `{"name":"node-red","bin":{"node-red-pi":"bin/node-red-pi","node-red":"./red.js"}}`,
				"node_modules/node-red/red.js":       "", "node_modules/node-red/bin/node-red-pi": ""},
			wantRun: "node node_modules/node-red/red.js", note: `the command "node-red" of its "bin"`,
		},
		{
			name: "scoped package with a bin string",
			files: map[string]string{"package.json": pkg(`"@acme/server":"1","left-pad":"1"`),
				"node_modules/left-pad/package.json":     `{"name":"left-pad"}`,
				"node_modules/@acme/server/package.json": `{"bin":"dist/cli.js"}`, "node_modules/@acme/server/dist/cli.js": ""},
			wantRun: "node node_modules/@acme/server/dist/cli.js",
		},
		{
			name:    "own entry file wins over a dependency's bin",
			files:   map[string]string{"package.json": pkg(`"node-red":"4"`), "server.js": "", "node_modules/node-red/package.json": `{"bin":"red.js"}`, "node_modules/node-red/red.js": ""},
			wantRun: "node server.js",
		},
		{
			name:    "main missing, nothing installed",
			files:   map[string]string{"package.json": pkg(`"node-red":"4"`)},
			wantRun: "node index.js", missing: "index.js", note: "node_modules is not installed",
		},
		{
			name: "bin file missing",
			files: map[string]string{"package.json": pkg(`"tool":"1"`),
				"node_modules/tool/package.json": `{"bin":{"tool":"cli.js"}}`},
			wantRun: "node index.js", missing: "index.js",
		},
		{
			name:    "start script of an installed command",
			files:   map[string]string{"package.json": `{"scripts":{"start":"next start -p $PORT"}}`, "node_modules/.bin/next": ""},
			wantRun: "node_modules/.bin/next start -p $PORT",
		},
		{
			name:    "start script naming a missing file",
			files:   map[string]string{"package.json": `{"scripts":{"start":"node --inspect server.js"}}`},
			wantRun: "node --inspect server.js", missing: "server.js",
		},
		{
			name:    "unknown app",
			files:   map[string]string{"README": "x"},
			wantRun: "./start.sh", missing: "start.sh",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := initFolder(t, "app", tt.files)
			code, out, errs := runCLI(t, "init", dir)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			a, err := config.Load(filepath.Join(dir, "shoal.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if a.Run.Command != tt.wantRun {
				t.Errorf("run = %q, want %q\n%s", a.Run.Command, tt.wantRun, out)
			}
			text, err := os.ReadFile(filepath.Join(dir, "shoal.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.note != "" && !strings.Contains(string(text), tt.note) {
				t.Errorf("shoal.yaml lacks %q:\n%s", tt.note, text)
			}
			if tt.missing == "" {
				if errs != "" || strings.Contains(string(text), "does not exist") {
					t.Errorf("unexpected warning: stderr %q\n%s", errs, text)
				}
				return
			}
			if !strings.Contains(string(text), "CHANGE ME: "+tt.missing+" does not exist in this folder") {
				t.Errorf("shoal.yaml does not say that %s is missing:\n%s", tt.missing, text)
			}
			if !strings.Contains(errs, "shoal init: warning:") || !strings.Contains(errs, "names "+tt.missing+", which does not exist") {
				t.Errorf("stderr does not warn that %s is missing: %q", tt.missing, errs)
			}
		})
	}
}
