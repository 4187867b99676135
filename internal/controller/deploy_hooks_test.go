package controller

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestHooksRunInTheUnpackedRelease: the deploy hooks run in a fresh
// unpack of the new release's artifact under the data directory, not in
// the folder it was built from: a file that exists only in the artifact is
// there, shoal.yaml and the secrets file (left out of artifacts) are not,
// and the folder is removed afterwards. A deploy naming an artifact that
// is not held is refused before anything runs.
func TestHooksRunInTheUnpackedRelease(t *testing.T) {
	dir := t.TempDir()
	cfg := writeApp(t, dir, "serve", 1, 2)
	h := start(t, dir, cfg)
	h.waitFor("v1 serving", onRelease(1, 1))
	ctx := testenv.Context(t, 60*time.Second)

	marker := filepath.Join(dir, "only-in-artifact.txt")
	if err := os.WriteFile(marker, []byte("packed-at-build\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check := `cat only-in-artifact.txt; pwd; test ! -e shoal.yaml && test ! -e .secrets && echo "no config here"; echo "app=$SHOAL_APP hook=$SHOAL_HOOK key=$API_KEY"`
	setMode(t, dir, "serve", "serve\n    V: \"2\"", "deploy:\n  hooks:\n    pre_deploy: ['"+check+"']\n    post_deploy: ['"+check+"']\n")
	next, err := config.Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := next.Env(h.c.lookupEnv())
	if err != nil {
		t.Fatal(err)
	}
	art, _, err := h.c.buildArtifact(ctx, next, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The deployer's folder is gone as far as the daemon can tell: the
	// file is only in the artifact now.
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	unknown := "sha256:" + strings.Repeat("0", 64)
	if _, err := h.c.Deploy(ctx, DeployRequest{Config: next, Env: storeEnv(env), Digest: unknown}); !errors.Is(err, ErrUnknownArtifact) ||
		!strings.Contains(err.Error(), "upload it first") {
		t.Fatalf("deploy of an artifact not held: %v, want ErrUnknownArtifact", err)
	}
	// An image whose layer is not held is refused as well.
	img, err := h.c.o.Artifacts.PutImage(ctx, bytes.NewReader(savedImageTar(t)))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := h.c.o.Artifacts.Layers(img.Digest)
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v, %v", layers, err)
	}
	if err := h.c.o.Artifacts.Delete(layers[0].Artifact); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Deploy(ctx, DeployRequest{Config: next, Env: storeEnv(env), Digest: img.Digest}); !errors.Is(err, ErrUnknownArtifact) ||
		!strings.Contains(err.Error(), "the layers "+layers[0].Artifact) {
		t.Fatalf("deploy of an image without its layer: %v, want ErrUnknownArtifact naming the layer", err)
	}

	var log strings.Builder
	v, err := h.c.Deploy(ctx, DeployRequest{Config: next, Env: storeEnv(env), Digest: art.Digest, Log: &log})
	if err != nil || v != 2 {
		t.Fatalf("deploy v2: %d, %v\n%s", v, err, log.String())
	}
	out := log.String()
	hookDirs := filepath.Join(cfg.DataDir, hookDirPrefix)
	for _, kind := range []string{"pre_deploy", "post_deploy"} {
		for _, want := range []string{"[" + kind + "] packed-at-build", "[" + kind + "] " + hookDirs, "[" + kind + "] no config here",
			"[" + kind + "] app=web hook=" + kind + " key=[redacted]"} {
			if !strings.Contains(out, want) {
				t.Errorf("hook output lacks %q:\n%s", want, out)
			}
		}
	}
	if strings.Contains(out, dir+"\n") || strings.Contains(out, "sekrit") {
		t.Errorf("a hook ran in the app folder, or a secret leaked:\n%s", out)
	}
	ents, err := os.ReadDir(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), hookDirPrefix) {
			t.Errorf("the hooks' folder %s is left in the data directory", e.Name())
		}
	}
}

// savedImageTar is a saved image (`docker save`'s legacy layout) of one
// layer.
func savedImageTar(t *testing.T) []byte {
	t.Helper()
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	lw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	lw.Write([]byte("x"))
	lw.Close()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, f := range []struct{ name, body string }{
		{"l/layer.tar", layer.String()},
		{"c.json", `{"rootfs":{"type":"layers"}}`},
		{"manifest.json", `[{"Config":"c.json","Layers":["l/layer.tar"]}]`},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
