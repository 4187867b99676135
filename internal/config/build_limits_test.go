package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildUnpackLimits(t *testing.T) {
	dir := writeFiles(t, map[string]string{"shoal.yaml": "app: w\nrun: {command: x}\nbuild:\n  max_unpacked_size: 8GiB\n  max_unpacked_files: 2000000\n"})
	a, err := Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Build.MaxUnpackedSize != 8<<30 || a.Build.MaxUnpackedFiles != 2000000 {
		t.Fatalf("limits %d, %d", a.Build.MaxUnpackedSize, a.Build.MaxUnpackedFiles)
	}

	dir = writeFiles(t, map[string]string{"shoal.yaml": "app: w\nrun: {command: x}\nbuild:\n  max_unpacked_size: lots\n  max_unpacked_files: -1\n"})
	_, err = Load(filepath.Join(dir, "shoal.yaml"))
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("Load = %v, want Problems", err)
	}
	for _, want := range []string{"shoal.yaml:4:22: build.max_unpacked_size", "build.max_unpacked_files: must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\ndoes not say %q", err, want)
		}
	}
}
