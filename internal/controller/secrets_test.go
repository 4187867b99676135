package controller

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/testenv"
)

const settingsJSON = `{"private":{"apiKey":"settings-key-777"}}` // compact, as passed

// TestSettingsOnlyAsEnvAndLogsRedactedOnDisk runs an app whose settings
// file lies in its folder: the artifact holds neither the settings nor the
// secrets file, the instance gets METEOR_SETTINGS all the same, and the
// secret the app prints is redacted in its log file on disk, not only
// when read through Logs.
func TestSettingsOnlyAsEnvAndLogsRedactedOnDisk(t *testing.T) {
	dir := t.TempDir()
	writeApp(t, dir, "serve", 1, 1)
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte(settingsJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("  secrets_file: .secrets\n"), []byte("  secrets_file: .secrets\n  settings: settings.json\n"), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, dir, cfg)
	st := h.waitFor("1 in service", inService(1))
	in := st.Instances[0]

	// The release tree the instance runs in is the unpacked artifact.
	environ, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(in.PID), "environ"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(environ), "\x00"), "METEOR_SETTINGS="+settingsJSON) {
		t.Errorf("instance environment lacks METEOR_SETTINGS=%s", settingsJSON)
	}
	cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(in.PID), "cwd"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cwd, "index.txt")); err != nil {
		t.Fatalf("release tree %s: %v", cwd, err)
	}
	for _, name := range []string{"settings.json", ".secrets", "shoal.yaml"} {
		if _, err := os.Stat(filepath.Join(cwd, name)); !os.IsNotExist(err) {
			t.Errorf("%s shipped in the artifact (stat: %v)", name, err)
		}
	}

	// The app printed API_KEY from the secrets file when it started.
	logPath, err := h.rt.Logs(in.ID)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 30*time.Second)
	var raw []byte
	if err := testenv.WaitFor(ctx, func() error {
		raw, err = os.ReadFile(logPath)
		if err == nil && !bytes.Contains(raw, []byte("listening on")) {
			err = errors.New("no output yet")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("sekrit-value-123")) || !bytes.Contains(raw, []byte("secret "+config.RedactedValue)) {
		t.Errorf("log file not redacted: %q", raw)
	}
	if fi, err := os.Stat(logPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

// TestBuildExcludeLeavesSecretsOutOfBuildOutput builds an app whose build
// copies the whole app folder into its output folder: the settings, the
// secrets file and shoal.yaml stay out of the artifact.
func TestBuildExcludeLeavesSecretsOutOfBuildOutput(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"shoal.yaml": `app: web
build:
  command: mkdir -p out && cp -R index.txt settings.json .secrets shoal.yaml conf out/
  output: out
run:
  command: ./web
  secrets_file: .secrets
  settings: conf/settings.json
`,
		"index.txt":          "artifact\n",
		"settings.json":      "{}",
		"conf/settings.json": settingsJSON,
		".secrets":           "API_KEY=sekrit-value-123\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	arts, err := release.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 30*time.Second)
	art, err := arts.Build(ctx, release.BuildSpec{Dir: dir, Command: cfg.Build.Command, Output: "out", Exclude: cfg.BuildExclude()})
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(t.TempDir(), "tree")
	if err := arts.Unpack(ctx, art.Digest, tree); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(tree, p)
			got = append(got, rel)
		}
		return err
	})
	slices.Sort(got)
	// settings.json at the top is not the configured settings file: it ships.
	if want := []string{"index.txt", "settings.json"}; !slices.Equal(got, want) {
		t.Errorf("artifact holds %v, want %v", got, want)
	}
}
