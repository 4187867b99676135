package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/release"
)

// BuildSpec is how the app is built and packed into its artifact: the
// build section's command, output and env in the app folder, and what the
// artifact leaves out (BuildExclude). `shoal up` builds its first release
// with it and `shoal deploy` every later one, so that both make the same
// artifact of the same folder. log receives the build command's output;
// nil discards it. A configuration parsed by ParseSent has no folder on
// this host and is refused.
func (a *App) BuildSpec(log io.Writer) (release.BuildSpec, error) {
	if a.sent {
		return release.BuildSpec{}, errors.New("a sent configuration cannot be built here: its app folder is on the deployer's machine")
	}
	spec := release.BuildSpec{Dir: a.Dir, Exclude: a.BuildExclude(), Log: log}
	if a.Build != nil {
		spec.Command = a.Build.Command
		out, err := filepath.Rel(a.Dir, a.OutputDir())
		if err != nil {
			return release.BuildSpec{}, fmt.Errorf("build output: %w", err)
		}
		spec.Output = out
		for k, v := range a.Build.Env {
			spec.Env = append(spec.Env, k+"="+v)
		}
		sort.Strings(spec.Env)
	}
	if a.Docker() {
		df, err := filepath.Rel(a.OutputDir(), a.Build.Dockerfile)
		if err != nil {
			return release.BuildSpec{}, fmt.Errorf("build.dockerfile: %w", err)
		}
		opts := dockerrt.BuildOptions{App: a.Name, Dockerfile: filepath.ToSlash(df), Target: a.Build.Target, Args: a.Build.Args}
		key, err := json.Marshal(opts)
		if err != nil {
			return release.BuildSpec{}, fmt.Errorf("build: %w", err)
		}
		spec.ImageKey = string(key)
		spec.Image = func(ctx context.Context, buildContext io.Reader, log io.Writer) (io.ReadCloser, error) {
			return dockerrt.BuildImage(ctx, buildContext, opts, log)
		}
	}
	return spec, nil
}

// BuildExclude is what the artifact leaves out: Exclude (the secrets file
// and the settings among them: they reach instances only as environment)
// plus shoal.yaml itself, which instances never read. Leaving it out is
// what makes an edit of run.env in shoal.yaml a config-only release (same
// artifact) instead of a rebuild. A build whose output is a folder of its
// own may copy the app folder, or part of it, into that output: shoal.yaml,
// the secrets file and the settings are left out at the same relative
// place under the output too.
func (a *App) BuildExclude() []string {
	ex := append(a.Exclude(), a.File)
	out := a.OutputDir()
	if out == a.Dir {
		return ex
	}
	for _, p := range []string{a.File, a.Run.SecretsFile, a.Run.Settings} {
		if p == "" {
			continue
		}
		rel, err := filepath.Rel(a.Dir, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue // outside the app folder: a build does not copy it by copying the folder
		}
		ex = append(ex, filepath.Join(out, rel))
	}
	return ex
}
