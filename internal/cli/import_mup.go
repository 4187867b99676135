package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/config"
)

// Files that `shoal import mup` writes beside shoal.yaml.
const (
	mupSecretsFile = "secrets.env"
	mupReportFile  = "shoal-import-mup.txt"
)

// newImportCmd is `shoal import`, the parent of the importers.
func newImportCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "write a shoal.yaml from another tool's configuration (mup)",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown importer %q (shoal import mup is the one there is)", args[0])
			}
			return usagef("import needs a source: shoal import mup")
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	cmd.AddCommand(newImportMupCmd(env))
	return cmd
}

// mupImport is one run of `shoal import mup`.
type mupImport struct {
	config   string // absolute path of mup.js
	settings string // --settings as given, "" for settings.json beside mup.js
	docker   bool
	force    bool
	node     string // the node command
}

func newImportMupCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mup [--settings FILE] [--docker] [--force] [mup.js | folder]",
		Short: "write shoal.yaml, secrets.env and a report from a Meteor Up configuration (mup.js)",
		Long: `Read a Meteor Up configuration and write, in the app's folder (mup.js's app.path):
shoal.yaml; secrets.env (mode 0600) with the env values that look secret; and
shoal-import-mup.txt, the report of what was mapped and of every key that could not
be, each with its path in mup.js and the reason. The report is printed too.

mup.js is JavaScript: it is evaluated with node (a child process, 10s at most, no
network), and the exported object is read. The settings file is --settings, or
settings.json beside mup.js (as mup deploy's default); it becomes run.settings
(METEOR_SETTINGS).

The app runs as processes (node main.js of the Meteor bundle), which shoal up and
the fleet's agents both run; --docker makes it runtime: docker instead, with a
Dockerfile.shoal from app.docker.image and app.docker.buildInstructions (shoal up
only for now). Existing files are not replaced without --force.`,
		Example: `  cd .deploy && shoal import mup
  shoal import mup --settings production.json .deploy/mup-production.js`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("import mup takes one mup.js (or its folder), got %q", args)
			}
			return nil
		},
	}
	settings := cmd.Flags().String("settings", "", "the Meteor settings `file` (default: settings.json beside mup.js)")
	docker := cmd.Flags().Bool("docker", false, "run the app as containers (runtime: docker) of an image FROM app.docker.image")
	force := cmd.Flags().Bool("force", false, "replace an existing shoal.yaml, secrets.env, Dockerfile.shoal and report")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		src := "."
		if len(args) == 1 {
			src = args[0]
		}
		abs, err := filepath.Abs(src)
		if err != nil {
			return err
		}
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			abs = filepath.Join(abs, "mup.js")
		}
		if !exists(abs) {
			return usagef("%s: no such file (shoal import mup reads a mup.js: give its path or folder)", abs)
		}
		node, err := exec.LookPath("node")
		if err != nil {
			return fmt.Errorf("import mup: mup.js is evaluated with node, which is not on the PATH: %w", err)
		}
		im := mupImport{config: abs, settings: *settings, docker: *docker, force: *force, node: node}
		return im.run(c.Context(), env)
	}
	return cmd
}

func (im *mupImport) run(ctx context.Context, env *Env) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, dropped, err := evalMupJS(ctx, im.node, im.config, mupEvalTimeout)
	if err != nil {
		return err
	}
	res, err := im.translate(cfg, dropped)
	if err != nil {
		return err
	}
	g := res.g
	report := res.report.text(im.config, filepath.Join(res.appDir, config.AppFileName))
	g.files = append(g.files, genFile{name: mupReportFile, text: report, mode: 0o644})
	if err := g.write(res.appDir, im.force); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s\n", filepath.Join(res.appDir, config.AppFileName))
	for _, f := range g.files {
		fmt.Fprintf(env.Stdout, "wrote %s\n", filepath.Join(res.appDir, f.name))
	}
	fmt.Fprint(env.Stdout, report)
	return nil
}

// mupNote is one line of the report: a key of mup.js and what became
// of it.
type mupNote struct {
	path string // in mup.js, such as app.docker.args[1]
	text string
}

// mupReport is what `shoal import mup` says it did and did not do.
type mupReport struct {
	mapped   []mupNote
	unmapped []mupNote
	todo     []string // steps left to the user
}

func (r *mupReport) mapTo(path, format string, a ...any) {
	r.mapped = append(r.mapped, mupNote{path, fmt.Sprintf(format, a...)})
}

func (r *mupReport) skip(path, format string, a ...any) {
	r.unmapped = append(r.unmapped, mupNote{path, fmt.Sprintf(format, a...)})
}

// text renders the report; it never holds a value of env or settings.
func (r *mupReport) text(src, dst string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "shoal import mup: %s -> %s\n", src, dst)
	fmt.Fprintf(&b, "\nMapped (%d):\n", len(r.mapped))
	for _, n := range r.mapped {
		fmt.Fprintf(&b, "  %s: %s\n", n.path, n.text)
	}
	fmt.Fprintf(&b, "\nNot mapped (%d), each with its path in mup.js and the reason:\n", len(r.unmapped))
	if len(r.unmapped) == 0 {
		b.WriteString("  (none)\n")
	}
	for _, n := range r.unmapped {
		fmt.Fprintf(&b, "  %s: %s\n", n.path, n.text)
	}
	if len(r.todo) > 0 {
		b.WriteString("\nTo do:\n")
		for _, t := range r.todo {
			fmt.Fprintf(&b, "  - %s\n", t)
		}
	}
	return b.String()
}

// mupResult is a translated mup.js.
type mupResult struct {
	appDir string // absolute app folder (app.path), where shoal.yaml goes
	g      *guess
	report *mupReport
}

// errorf is an error in mup.js that stops the import, a *UsageError
// naming the file and the key.
func (im *mupImport) errorf(path, format string, a ...any) error {
	return usagef("%s: %s: %s", im.config, path, fmt.Sprintf(format, a...))
}

// obj returns v as an object, or an error naming path when it is
// something else; a missing value is an empty object.
func (im *mupImport) obj(v any, path string) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, im.errorf(path, "must be an object, is %s", jsKind(v))
	}
	return m, nil
}

// str returns v as a string (numbers and booleans written as JSON would),
// and whether it is one of those.
func str(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

func jsKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x != ""
	case json.Number:
		return x.String() != "0"
	case nil:
		return false
	}
	return true
}

// sortedKeys returns the keys of m in order, for a stable report.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsPath joins a key to a path as the report writes it.
func jsPath(parent, key string) string {
	plain := key != ""
	for i, r := range key {
		if !(r == '_' || r == '$' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return parent + "[" + fmt.Sprintf("%q", key) + "]"
	case parent == "":
		return key
	}
	return parent + "." + key
}
