package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// nodeEntryFiles are the files a Node app is commonly started from, in
// the order init tries them when package.json has no usable "main".
var nodeEntryFiles = []string{"main.js", "index.js", "server.js", "app.js"}

// nodeEntry sets g.run for a Node app without a start script: its own
// entry file ("main" of package.json when that file exists, else a common
// name), else, for a folder that only installs a package (npm install
// node-red), the command ("bin") of that dependency; else "node <main or
// index.js>", which checkRunFiles then reports as missing.
func (g *guess) nodeEntry(dir, main string, deps map[string]string) {
	main = cleanRel(main)
	for _, f := range append([]string{main}, nodeEntryFiles...) {
		if f != "" && exists(filepath.Join(dir, f)) {
			g.run = "node " + f
			return
		}
	}
	if bins := dependencyBins(dir, deps); len(bins) > 0 {
		b := bins[0]
		g.run = "node " + path.Join("node_modules", b.pkg, b.file)
		g.notes = append(g.notes, fmt.Sprintf(`The app is the installed package %s: the command %q of its "bin" (no entry file of your own was found).`, b.pkg, b.name))
		if len(bins) > 1 {
			var others []string
			for _, o := range bins[1:] {
				others = append(others, fmt.Sprintf("node %s (%s)", path.Join("node_modules", o.pkg, o.file), o.name))
			}
			g.notes = append(g.notes, "Other commands of dependencies: "+strings.Join(others, ", ")+".")
		}
		return
	}
	if len(deps) > 0 && !exists(filepath.Join(dir, "node_modules")) {
		g.notes = append(g.notes, "node_modules is not installed, so the commands of dependencies could not be looked at: run npm install, then shoal init -force.")
		g.warnings = append(g.warnings, "node_modules is not installed: if the app is a package you installed (such as node-red), run npm install, then shoal init -force")
	}
	if main == "" {
		main = "index.js"
	}
	g.run = "node " + main
}

// depBin is one command a dependency installs (package.json "bin").
type depBin struct {
	pkg  string // dependency, as in node_modules/<pkg>
	name string // command name
	file string // script, relative to the package's folder
}

// dependencyBins lists the commands that the installed dependencies of
// deps provide, whose script exists, sorted by package and name; for each
// package the command named like the package comes first.
func dependencyBins(dir string, deps map[string]string) []depBin {
	names := make([]string, 0, len(deps))
	for n := range deps {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []depBin
	for _, pkg := range names {
		if strings.Contains(pkg, "..") {
			continue
		}
		pdir := filepath.Join(dir, "node_modules", filepath.FromSlash(pkg))
		data, err := os.ReadFile(filepath.Join(pdir, "package.json"))
		if err != nil {
			continue
		}
		var p struct {
			Bin json.RawMessage `json:"bin"`
		}
		if json.Unmarshal(data, &p) != nil || len(p.Bin) == 0 {
			continue
		}
		short := pkg[strings.LastIndexByte(pkg, '/')+1:]
		bins := map[string]string{}
		var one string
		if json.Unmarshal(p.Bin, &one) == nil {
			bins[short] = one
		} else if json.Unmarshal(p.Bin, &bins) != nil {
			continue
		}
		keys := make([]string, 0, len(bins))
		for k := range bins {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if (keys[i] == short) != (keys[j] == short) {
				return keys[i] == short
			}
			return keys[i] < keys[j]
		})
		for _, k := range keys {
			f := cleanRel(bins[k])
			if f == "" || !exists(filepath.Join(pdir, filepath.FromSlash(f))) {
				continue
			}
			out = append(out, depBin{pkg: pkg, name: k, file: f})
		}
	}
	return out
}

// cleanRel returns p as a clean relative slash path, or "" when it is
// empty or leaves its folder.
func cleanRel(p string) string {
	if p == "" {
		return ""
	}
	c := path.Clean(strings.TrimPrefix(p, "./"))
	if c == "." || path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		return ""
	}
	return c
}

// startScript turns package.json's start script into a command for
// /bin/sh in the release folder: npm puts node_modules/.bin on the PATH
// of its scripts, shoal does not, so a first word that is an installed
// command ("next start", "node-red") gets its path.
func startScript(dir, script string) string {
	first, rest, _ := strings.Cut(strings.TrimSpace(script), " ")
	if first != "" && !strings.ContainsAny(first, "/=$") && exists(filepath.Join(dir, "node_modules", ".bin", first)) {
		return strings.TrimSpace("node_modules/.bin/" + first + " " + rest)
	}
	return script
}

// checkRunFiles says so when run.command names a file that is not in the
// folder: a comment above run.command and a warning on stderr. A file
// that a build script may make is reported as missing "yet" (an install
// alone makes only node_modules).
func (g *guess) checkRunFiles(dir string) {
	builds := strings.Contains(g.build, "npm run build")
	for _, f := range runFiles(g.run) {
		if exists(filepath.Join(dir, filepath.FromSlash(f))) {
			continue
		}
		if builds {
			g.notes = append(g.notes, fmt.Sprintf("CHECK: %s does not exist in this folder yet; the build must make it.", f))
			g.warnings = append(g.warnings, fmt.Sprintf("run.command %q names %s, which does not exist in %s yet: check that the build makes it", g.run, f, dir))
			continue
		}
		g.notes = append(g.notes, fmt.Sprintf("CHANGE ME: %s does not exist in this folder.", f))
		g.warnings = append(g.warnings, fmt.Sprintf("run.command %q names %s, which does not exist in %s: edit run.command in shoal.yaml", g.run, f, dir))
	}
}

// runFiles returns the words of a command that name files of the app: a
// script with a JavaScript or TypeScript extension, or a relative path
// such as ./start.sh or node_modules/.bin/next. Flags, variables and
// words after a shell operator are left alone.
func runFiles(cmd string) []string {
	var out []string
	for _, w := range strings.Fields(cmd) {
		if strings.ContainsAny(w, "|&;<>#") {
			break
		}
		if strings.HasPrefix(w, "-") || strings.ContainsAny(w, "$=*?'\"`") {
			continue
		}
		ext := path.Ext(w)
		script := ext == ".js" || ext == ".mjs" || ext == ".cjs" || ext == ".ts" || ext == ".sh"
		if !script && !strings.Contains(w, "/") {
			continue
		}
		if f := cleanRel(w); f != "" {
			out = append(out, f)
		}
	}
	return out
}
