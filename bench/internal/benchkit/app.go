// Package benchkit holds the helpers shared by the whole-system benchmarks
// (bench/autoscale, bench/deploy, bench/replace): copy an example app to a
// temp folder and rewrite its shoal.yaml, run `shoal up` on it until its
// ready line, poll the admin API, measure the app's own boot without
// Shoal, count requests, and print percentile rows.
//
// It is for benchmark programs only: errors are returned, never fatal,
// and nothing here is meant for the product.
package benchkit

import (
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// AppConfig is an app's shoal.yaml decoded as generic YAML so that a
// benchmark can rewrite any key. It is not safe for concurrent use.
type AppConfig map[string]any

// Section returns the mapping at top-level key k, creating an empty one
// (and storing it in c) when k is missing or not a mapping.
func (c AppConfig) Section(k string) map[string]any {
	m, _ := c[k].(map[string]any)
	if m == nil {
		m = map[string]any{}
		c[k] = m
	}
	return m
}

// SetEnv sets run.env[k] = v, creating run and run.env as needed.
func (c AppConfig) SetEnv(k, v string) {
	run := c.Section("run")
	env, _ := run["env"].(map[string]any)
	if env == nil {
		env = map[string]any{}
		run["env"] = env
	}
	env[k] = v
}

// Local points the balancer and admin listeners at ephemeral ports on
// 127.0.0.1 and drops data_dir, so that state lives in the copy's .shoal.
func (c AppConfig) Local() {
	c.Section("balancer")["listen"] = "127.0.0.1:0"
	c.Section("admin")["listen"] = "127.0.0.1:0"
	delete(c, "data_dir")
}

// EditConfig reads dir/shoal.yaml, lets edit change it, and writes it back.
func EditConfig(dir string, edit func(AppConfig)) error {
	path := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Decode into a plain map: yaml.v3 would give nested mappings the
	// named type AppConfig, which Section does not recognise.
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if raw == nil {
		raw = map[string]any{}
	}
	doc := AppConfig(raw)
	edit(doc)
	out, err := yaml.Marshal(map[string]any(doc))
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// PrepareApp copies the app folder src into a new temp folder named after
// pattern (as os.MkdirTemp), applies edit to its shoal.yaml after Local,
// and returns the folder; the caller removes it. On error nothing is left
// behind.
func PrepareApp(src, pattern string, edit func(AppConfig)) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	err = testenv.CopyApp(src, dir)
	if err == nil {
		err = EditConfig(dir, func(c AppConfig) {
			c.Local()
			edit(c)
		})
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}
