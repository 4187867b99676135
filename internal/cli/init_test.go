package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/config"
)

func initFolder(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	for p, body := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestInitGuessesAndLoads(t *testing.T) {
	tests := []struct {
		name       string
		folder     string
		files      map[string]string
		wantBuild  string // "" = no build section
		wantOutput string
		wantRun    string
		wantEnv    []string // literal env as NAME=value
		check      func(t *testing.T, a *config.App)
	}{
		{
			name: "meteor", folder: "My Meteor App",
			files: map[string]string{".meteor/release": "METEOR@3.0.4\n", "package.json": `{"scripts":{"start":"meteor run"}}`,
				"settings.json": `{"public":{}}`},
			wantBuild:  "rm -rf .meteor/local/shoal-build && meteor npm install && meteor build .meteor/local/shoal-build --directory --server-only && cd .meteor/local/shoal-build/bundle/programs/server && meteor npm install --omit=dev",
			wantOutput: ".meteor/local/shoal-build/bundle", wantRun: "node main.js", wantEnv: []string{"HTTP_FORWARDED_COUNT=1", "NODE_ENV=production"},
			check: func(t *testing.T, a *config.App) {
				if a.Name != "my-meteor-app" || a.Run.EnvFromHost[0] != "MONGO_URL" || a.Settings() != `{"public":{}}` ||
					a.Balancer.Sticky == nil || a.Balancer.Sticky.SockJSPrefixes[0] != "/sockjs" || a.Health.Grace.D().Seconds() != 120 {
					t.Errorf("meteor app = %+v", a)
				}
			},
		},
		{
			name: "node start script", folder: "api",
			files:     map[string]string{"package.json": `{"main":"x.js","scripts":{"start":"node --enable-source-maps server.js: #x"},"dependencies":{"a":"1"}}`, "package-lock.json": "{}"},
			wantBuild: "npm ci --omit=dev", wantOutput: ".", wantRun: "node --enable-source-maps server.js: #x",
			wantEnv: []string{"NODE_ENV=production"},
		},
		{
			name: "node without deps", folder: "meteor-like",
			files:   map[string]string{"package.json": `{"name":"x"}`, "main.js": "", "settings.json": "{}", "secrets.env": "K=v\n"},
			wantRun: "node main.js", wantEnv: []string{"NODE_ENV=production"},
			check: func(t *testing.T, a *config.App) {
				if a.Settings() != "{}" || filepath.Base(a.Run.SecretsFile) != "secrets.env" {
					t.Errorf("settings %q, secrets %q", a.Settings(), a.Run.SecretsFile)
				}
			},
		},
		{
			name: "node with build", folder: "spa",
			files:     map[string]string{"package.json": `{"main":"dist/server.js","scripts":{"build":"tsc"}}`},
			wantBuild: "npm install && npm run build", wantOutput: ".", wantRun: "node dist/server.js", wantEnv: []string{"NODE_ENV=production"},
		},
		{
			name: "broken package.json", folder: "x",
			files:   map[string]string{"package.json": `{`},
			wantRun: "node index.js", wantEnv: []string{"NODE_ENV=production"},
		},
		{
			name: "go", folder: "goapp",
			files:     map[string]string{"go.mod": "module example.com/goapp\n"},
			wantBuild: "go build -o bin/goapp .", wantOutput: "bin", wantRun: "./goapp",
		},
		{
			name: "unknown", folder: "___",
			wantRun: "./start.sh",
			check: func(t *testing.T, a *config.App) {
				if a.Name != "app" {
					t.Errorf("name %q", a.Name)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := initFolder(t, tt.folder, tt.files)
			code, out, errs := runCLI(t, "init", dir)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if !strings.Contains(out, "wrote ") || !strings.Contains(out, tt.wantRun) {
				t.Errorf("summary does not say what was guessed:\n%s", out)
			}
			a, err := config.Load(filepath.Join(dir, "shoal.yaml"))
			if err != nil {
				text, _ := os.ReadFile(filepath.Join(dir, "shoal.yaml"))
				t.Fatalf("generated file does not load: %v\n%s", err, text)
			}
			if tt.wantBuild == "" {
				if a.Build != nil {
					t.Errorf("unexpected build %+v", a.Build)
				}
			} else if a.Build == nil || a.Build.Command != tt.wantBuild || a.Build.Output != filepath.Join(dir, tt.wantOutput) {
				t.Errorf("build = %+v, want %q in %q", a.Build, tt.wantBuild, tt.wantOutput)
			}
			if a.Run.Command != tt.wantRun {
				t.Errorf("run = %q, want %q", a.Run.Command, tt.wantRun)
			}
			var env []string
			for k, v := range a.Run.Env {
				env = append(env, k+"="+v)
			}
			sort.Strings(env)
			if strings.Join(env, ",") != strings.Join(tt.wantEnv, ",") {
				t.Errorf("env = %v, want %v", env, tt.wantEnv)
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	dir := initFolder(t, "goapp", map[string]string{"go.mod": "module x\n", "shoal.yaml": "mine"})
	code, _, errs := runCLI(t, "init", dir)
	if code != ExitUsage || !strings.Contains(errs, "already exists (use -force to overwrite it)") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "shoal.yaml")); string(b) != "mine" {
		t.Fatal("existing file changed")
	}
	code, _, errs = runCLI(t, "init", dir, "-force")
	if code != ExitOK {
		t.Fatalf("-force: exit %d, %s", code, errs)
	}
	if _, err := config.Load(filepath.Join(dir, "shoal.yaml")); err != nil {
		t.Fatal(err)
	}
	code, _, _ = runCLI(t, "init", filepath.Join(dir, "missing"))
	if code != ExitUsage {
		t.Fatalf("missing folder: exit %d", code)
	}
	code, _, _ = runCLI(t, "init", dir, "other")
	if code != ExitUsage {
		t.Fatalf("two folders: exit %d", code)
	}
}

func TestYAMLScalar(t *testing.T) {
	for in, want := range map[string]string{
		"node main.js": "node main.js", "a: b": `"a: b"`, "x #y": `"x #y"`, "true": `"true"`, "10": `"10"`,
		"-x": `"-x"`, "": `""`, "go build -o bin/app .": "go build -o bin/app .",
	} {
		if got := yamlScalar(in); got != want {
			t.Errorf("yamlScalar(%q) = %s, want %s", in, got, want)
		}
	}
}
