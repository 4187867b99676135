package controller

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/shoal-dev/shoal/internal/config"
)

// deploy does the part of `shoal deploy` that runs where the CLI does, then
// calls Deploy: it loads the harness folder's shoal.yaml (problems wrapped in
// ErrInvalidConfig, as the admin API answers them), resolves its env, builds
// the artifact into the controller's artifact store with the controller's own
// build path (a failed build is an event and names the command once, as at a
// first start) and sends config, env and digest. Safe to call from any
// goroutine: it reports through its error only.
func (h *harness) deploy(ctx context.Context, req DeployRequest) (int, error) {
	cfg, err := config.Load(filepath.Join(h.dir, "shoal.yaml"))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	env, err := cfg.Env(h.c.lookupEnv())
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	art, _, err := h.c.buildArtifact(ctx, cfg, env, log)
	if err != nil {
		return 0, err
	}
	req.Config, req.Env, req.Digest = cfg, storeEnv(env), art.Digest
	return h.c.Deploy(ctx, req)
}
