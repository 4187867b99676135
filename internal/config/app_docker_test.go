package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestRuntimeDockerDefaultsAndBuildSpec(t *testing.T) {
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\n", "docker/Dockerfile.prod": "FROM scratch\n"})
	a, err := Parse("shoal.yaml", []byte("app: web\nruntime: docker\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Docker() || a.Build == nil || a.Build.Dockerfile != filepath.Join(dir, "Dockerfile") || a.Run.Command != "" || a.Run.Port != 0 {
		t.Fatalf("runtime %q build %+v run %+v", a.Runtime, a.Build, a.Run)
	}
	spec, err := a.BuildSpec(nil)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Image == nil || !strings.Contains(spec.ImageKey, `"Dockerfile":"Dockerfile"`) {
		t.Errorf("build spec: image %v key %q", spec.Image != nil, spec.ImageKey)
	}

	a, err = Parse("shoal.yaml", []byte("app: web\nruntime: docker\nbuild:\n  dockerfile: docker/Dockerfile.prod\n  target: prod\n  args: {NODE_VERSION: \"20\"}\nrun:\n  port: 3000\n  command: /app --verbose\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	spec, err = a.BuildSpec(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Dockerfile":"docker/Dockerfile.prod"`, `"Target":"prod"`, `"NODE_VERSION":"20"`} {
		if !strings.Contains(spec.ImageKey, want) {
			t.Errorf("image key %q lacks %s", spec.ImageKey, want)
		}
	}
	if a.Run.Port != 3000 {
		t.Errorf("run.port = %d", a.Run.Port)
	}
	// runtime and run.port enter the fingerprint: a move to docker is a
	// change of the run configuration.
	p, err := Parse("shoal.yaml", []byte("app: web\nrun:\n  command: /app --verbose\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Runtime != RuntimeProcess || p.Docker() {
		t.Errorf("default runtime %q", p.Runtime)
	}
	if p.Fingerprint(nil) == a.Fingerprint(nil) {
		t.Error("a process and a docker configuration share a fingerprint")
	}
	// A process app's build spec builds no image.
	spec, err = p.BuildSpec(nil)
	if err != nil || spec.Image != nil || spec.ImageKey != "" {
		t.Errorf("process build spec: %v image %v key %q", err, spec.Image != nil, spec.ImageKey)
	}
}

func TestRuntimeDockerProblems(t *testing.T) {
	dir := writeFiles(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown runtime", "app: web\nruntime: podman\nrun: {command: x}\n", `shoal.yaml:2:10: runtime: unknown runtime "podman" (use "process" or "docker")`},
		{"image keys without docker", "app: web\nbuild:\n  dockerfile: Dockerfile\n  args: {A: b}\nrun: {command: x}\n",
			`shoal.yaml:3:15: build.dockerfile: only with runtime: docker (runtime is "process")`},
		{"run.port without docker", "app: web\nrun: {command: x, port: 3000}\n", `run.port: only with runtime: docker`},
		{"command still required for a process", "app: web\n", `run.command: the command that starts one instance is required`},
		{"dockerfile outside the context", "app: web\nruntime: docker\nbuild:\n  output: sub\n  command: mkdir -p sub\n  dockerfile: Dockerfile\n",
			`build.dockerfile: Dockerfile is outside the build context sub (build.output)`},
		{"bad port", "app: web\nruntime: docker\nrun: {port: 70000}\n", `run.port: must be a TCP port (1-65535), got 70000`},
		{"registry with a scheme", "app: web\nruntime: docker\nbuild: {registry: \"http://127.0.0.1:5000\"}\n",
			`build.registry: want host:port or host:port/path of a Docker registry (no scheme, lowercase path), got "http://127.0.0.1:5000"`},
		{"registry without a host", "app: web\nruntime: docker\nbuild: {registry: \"shoal/Apps\"}\n", `build.registry: want host:port`},
		{"registry without docker", "app: web\nbuild: {registry: \"127.0.0.1:5000\"}\nrun: {command: x}\n", `build.registry: only with runtime: docker`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("shoal.yaml", []byte(tc.yaml), dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}
