package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/dockerrt"
)

// pushToRegistry does what build.registry asks of a deploy: it pushes the
// image of image artifact d from the engine where the CLI runs (which
// built it) to the registry and returns the digest of the artifact that
// names it there (release.Store.PutPulled), which the deploy then names:
// hosts pull the image instead of fetching its layers. Without a registry
// it returns d.
func pushToRegistry(ctx context.Context, cfg *config.App, d string, w io.Writer) (string, error) {
	if !cfg.Docker() || cfg.Build == nil || cfg.Build.Registry == "" {
		return d, nil
	}
	arts, err := openArtifacts(cfg)
	if err != nil {
		return "", err
	}
	rc, err := arts.OpenTar(ctx, d)
	if err != nil {
		return "", err
	}
	id, err := dockerrt.ImageID(rc)
	rc.Close()
	if err != nil {
		return "", fmt.Errorf("artifact %s: %w", short(d), err)
	}
	cli, err := dockerrt.Connect(ctx, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	fmt.Fprintf(w, "  pushing image %s to %s (build.registry)\n", short(id), cfg.Build.Registry)
	ref, err := dockerrt.Push(ctx, cli, id, cfg.Build.Registry, cfg.Name)
	if err != nil {
		return "", err
	}
	a, err := arts.PutPulled(ctx, d, ref)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "  pushed %s; hosts pull it from there\n", ref)
	return a.Digest, nil
}
