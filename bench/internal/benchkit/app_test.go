package benchkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrepareAppKeepsNestedKeys guards against losing the keys of a
// section that an edit touches (yaml.v3 decodes nested mappings into the
// named map type when asked to decode into one).
func TestPrepareAppKeepsNestedKeys(t *testing.T) {
	src := t.TempDir()
	yml := "app: a\ndata_dir: /var/x\nrun:\n  command: node main.js\n  env:\n    NODE_ENV: production\nhealth:\n  path: /healthz\n"
	if err := os.WriteFile(filepath.Join(src, "shoal.yaml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, ".shoal"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := PrepareApp(src, "benchkit-test-", func(c AppConfig) {
		c.SetEnv("BOOT_DELAY_MS", "0")
		c.Section("health")["interval"] = "1s"
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, err := os.ReadFile(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"command: node main.js", "NODE_ENV: production", `BOOT_DELAY_MS: "0"`,
		"path: /healthz", "interval: 1s", "listen: 127.0.0.1:0"} {
		if !strings.Contains(got, want) {
			t.Errorf("shoal.yaml lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "data_dir") {
		t.Errorf("data_dir not dropped:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ".shoal")); !os.IsNotExist(err) {
		t.Errorf(".shoal copied: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh mode not kept: %v %v", fi, err)
	}
}
