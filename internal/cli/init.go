package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/config"
)

// newInitCmd is "shoal init [--force] [dir]": it looks at the app folder,
// guesses how to build and run it, and writes a commented starter
// shoal.yaml that the loader accepts.
func newInitCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init [--force] [--docker] [dir]",
		Short: "write a commented starter shoal.yaml for the app in this folder",
		Long: `Write a commented starter shoal.yaml for the app in dir (default: this folder).

For a Meteor app (.meteor/release), the build is meteor build --directory and the
run is node main.js; with --docker, the app runs as containers of an image of the
bundle instead, from a Dockerfile.shoal written beside shoal.yaml.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("init takes one folder, got %q", args)
			}
			return nil
		},
	}
	force := cmd.Flags().Bool("force", false, "overwrite an existing shoal.yaml (and Dockerfile.shoal)")
	docker := cmd.Flags().Bool("docker", false, "Meteor apps: run as containers (runtime: docker) of an image built from a generated Dockerfile.shoal")
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		dir := "."
		if len(args) == 1 {
			dir = args[0]
		}
		return runInit(env, dir, *force, *docker)
	}
	return cmd
}

func runInit(env *Env, dir string, force, docker bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return usagef("%s is not a folder", dir)
	}
	g := guessApp(abs, docker)
	if docker && g.runtime != config.RuntimeDocker {
		return usagef("init --docker writes a Dockerfile for Meteor apps only; %s: %s (write a Dockerfile and set runtime: docker, see docs/configuration.md)", dir, g.why)
	}
	if err := g.write(abs, force); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s\n", filepath.Join(dir, config.AppFileName))
	for _, f := range g.files {
		fmt.Fprintf(env.Stdout, "wrote %s\n", filepath.Join(dir, f.name))
	}
	fmt.Fprintf(env.Stdout, "  app:   %s (%s)\n", g.name, g.why)
	if g.build != "" {
		fmt.Fprintf(env.Stdout, "  build: %s\n  output: %s\n", g.build, g.output)
	} else {
		fmt.Fprintf(env.Stdout, "  build: none, the folder is shipped as it is\n")
	}
	if g.run != "" {
		fmt.Fprintf(env.Stdout, "  run:   %s\n", g.run)
	} else {
		fmt.Fprintf(env.Stdout, "  run:   the image's CMD (runtime: docker)\n")
	}
	if g.settings != "" {
		fmt.Fprintf(env.Stdout, "  settings: %s (passed as METEOR_SETTINGS)\n", g.settings)
	}
	for _, w := range g.warnings {
		fmt.Fprintf(env.Stderr, "shoal init: warning: %s\n", w)
	}
	fmt.Fprintf(env.Stdout, "review it (every guess is commented), then run: shoal up\n")
	return nil
}

// genFile is a file that init or import writes beside shoal.yaml.
type genFile struct {
	name string // relative to the app folder
	text string
	mode os.FileMode
}

// write checks that the rendered shoal.yaml of g loads with its files in
// place, then writes g.files and shoal.yaml into dir (absolute), refusing
// to replace any existing one unless force. Nothing is written when one
// of them exists or the configuration does not load.
func (g *guess) write(dir string, force bool) error {
	text := g.render()
	path := filepath.Join(dir, config.AppFileName)
	if !force {
		for _, p := range append([]string{config.AppFileName}, g.fileNames()...) {
			if exists(filepath.Join(dir, p)) {
				return usagef("%s already exists (use -force to overwrite it)", filepath.Join(dir, p))
			}
		}
	}
	// The file must load; a failure here is a bug in the guesser, and
	// writing a file that shoal up then rejects would only move the error.
	// It is checked against the files it names, so they are written first
	// and removed again when it does not load.
	var written []string
	for _, f := range g.files {
		p := filepath.Join(dir, f.name)
		if err := writeNew(p, []byte(f.text), force, f.mode); err != nil {
			removeAll(written)
			return err
		}
		written = append(written, p)
	}
	if _, err := config.Parse(path, []byte(text), dir); err != nil {
		removeAll(written)
		if g.author != "" {
			// Values come from another tool's file: the problem is most
			// likely one of them, which the error names by its key.
			return usagef("the shoal.yaml made by %s does not load, so nothing was written (a value it copied that Shoal refuses; if not, please report this):\n%w", g.author, err)
		}
		return fmt.Errorf("the generated configuration does not load (please report this): %w", err)
	}
	return writeNew(path, []byte(text), force, 0o644)
}

func (g *guess) fileNames() []string {
	var out []string
	for _, f := range g.files {
		out = append(out, f.name)
	}
	return out
}

func removeAll(paths []string) {
	for _, p := range paths {
		os.Remove(p)
	}
}

// writeNew writes path with mode, refusing to replace an existing file
// unless force. A replaced file gets mode too.
func writeNew(path string, data []byte, force bool, mode os.FileMode) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			return usagef("%s already exists (use -force to overwrite it)", path)
		}
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return nil
	}
	if err := atomicfile.Write(path, data, mode); err != nil {
		return err
	}
	return nil
}

// guess is what init inferred about an app folder.
type guess struct {
	name      string
	kind      string // "meteor", "node", "go" or "" (unknown)
	why       string // what was found, for the summary
	build     string // build command, "" for none
	output    string // build output
	run       string
	notes     []string // comments placed above run.command
	warnings  []string // printed on stderr: what the user must check
	settings  string   // settings file found (Meteor)
	secrets   string   // secrets file found
	hostEnv   []string
	literal   map[string]string
	sockjs    bool
	graceNote string

	// Set by the Meteor guess and by `shoal import mup` (import_mup*.go).
	runtime    string            // config.RuntimeDocker, or "" for processes
	dockerfile string            // build.dockerfile (runtime docker)
	port       int               // run.port (runtime docker), 0 for unset
	cpu        float64           // run.cpu, 0 for unset
	memory     string            // run.memory, "" for unset
	rootURL    string            // run.root_url, "" to leave it commented
	envNotes   map[string]string // comments after literal env entries
	grace      string            // health.grace, "" for the default guess
	hosts      []string          // balancer.hosts
	sticky     bool              // balancer.sticky.cookie as well as SockJS
	exclude    []string          // build.exclude
	author     string            // what wrote the file; default "shoal init"
	header     []string          // comment lines after the first lines
	tail       []string          // comment lines at the end (fleet hosts)
	files      []genFile         // written beside shoal.yaml
}

var appNameInvalid = regexp.MustCompile(`[^a-z0-9-]+`)

// appNameFor derives a valid app name from a folder name.
func appNameFor(dir string) string {
	n := appNameInvalid.ReplaceAllString(strings.ToLower(filepath.Base(dir)), "-")
	n = strings.Trim(n, "-")
	if len(n) > 63 {
		n = strings.Trim(n[:63], "-")
	}
	if n == "" {
		return "app"
	}
	return n
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// guessApp inspects dir (absolute); docker asks for runtime: docker
// where init can write the Dockerfile (Meteor apps).
func guessApp(dir string, docker bool) guess {
	g := guess{name: appNameFor(dir), literal: map[string]string{}, envNotes: map[string]string{}}
	if exists(filepath.Join(dir, "secrets.env")) {
		g.secrets = "secrets.env"
	}
	switch {
	case exists(filepath.Join(dir, ".meteor", "release")):
		g.meteor(dir, docker)
	case exists(filepath.Join(dir, "package.json")):
		g.node(dir)
	case exists(filepath.Join(dir, "go.mod")):
		g.kind, g.why = "go", "found go.mod"
		g.build = "go build -o bin/" + g.name + " ."
		g.output = "bin"
		g.run = "./" + g.name
	default:
		g.why = "no Meteor, Node or Go project found"
		g.run = "./start.sh"
		g.notes = []string{"CHANGE ME: the command that starts your app. It must listen on $PORT."}
		g.checkRunFiles(dir)
	}
	return g
}

func (g *guess) node(dir string) {
	g.kind, g.why = "node", "found package.json: a Node app"
	var pkg struct {
		Main         string            `json:"main"`
		Scripts      map[string]string `json:"scripts"`
		Dependencies map[string]string `json:"dependencies"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err == nil {
		err = json.Unmarshal(data, &pkg)
	}
	if err != nil {
		g.notes = append(g.notes, "package.json could not be read, so this is a guess.")
	}
	install := "npm install --omit=dev"
	if exists(filepath.Join(dir, "package-lock.json")) {
		install = "npm ci --omit=dev"
	}
	switch {
	case pkg.Scripts["build"] != "":
		g.build = strings.Replace(install, " --omit=dev", "", 1) + " && npm run build"
		g.output = "."
		g.notes = append(g.notes, "The build installs dev dependencies too; prune them in the build if the release gets large.")
	case len(pkg.Dependencies) > 0:
		g.build = install
		g.output = "."
	}
	switch {
	case pkg.Scripts["start"] != "":
		// Run the start script's command itself rather than "npm start",
		// so that the stop signal reaches the app and not npm.
		g.run = startScript(dir, pkg.Scripts["start"])
		g.notes = append(g.notes, `From the "start" script of package.json.`)
	default:
		g.nodeEntry(dir, pkg.Main, pkg.Dependencies) // init_node.go
	}
	g.checkRunFiles(dir) // init_node.go
	g.literal["NODE_ENV"] = "production"
	if exists(filepath.Join(dir, "settings.json")) {
		g.settings = "settings.json"
		g.notes = append(g.notes, "settings.json is passed as METEOR_SETTINGS.")
	}
}

var yamlPlain = regexp.MustCompile(`^[A-Za-z0-9./_][A-Za-z0-9 ./_=+,@()&|;-]*$`)

// yamlScalar writes s as a YAML scalar, quoted when it could be misread
// (special characters, or a word YAML would read as a bool, null or number).
func yamlScalar(s string) string {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n":
		return strconv.Quote(s)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.Quote(s)
	}
	if yamlPlain.MatchString(s) && !strings.HasSuffix(s, " ") {
		return s
	}
	return strconv.Quote(s)
}
