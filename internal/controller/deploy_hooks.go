package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/hooks"
)

// hookDirPrefix names the temp folders under the data directory in which
// deploy hooks run; leftovers of a crash are removed at start.
const hookDirPrefix = "hook-"

// runHooks runs the deploy hooks of one kind in order where the release
// runs, not in the deployer's folder: in a fresh unpack of artifact digest
// (a temp folder under the data directory, removed afterwards, so that
// what one hook writes is never seen by an instance or by the next
// deploy), with shoal's environment plus the release's (SHOAL_APP and
// SHOAL_HOOK added), output redacted and written to log. It stops at the
// first failure.
func (c *Controller) runHooks(ctx context.Context, kind, digest string, cfg *config.App, env config.Env, cmds []string, log io.Writer) error {
	if len(cmds) == 0 {
		return nil
	}
	dir, cleanup, err := c.unpackForHooks(ctx, digest)
	if err != nil {
		return fmt.Errorf("%s hooks: %w", kind, err)
	}
	defer cleanup()
	base := os.Environ()
	base = append(base, env.Environ()...)
	base = append(base, "SHOAL_APP="+cfg.Name, "SHOAL_HOOK="+kind)
	for i, cmd := range cmds {
		name := kind
		if len(cmds) > 1 {
			name += "[" + strconv.Itoa(i) + "]"
		}
		fmt.Fprintf(log, "running %s hook: %s\n", name, env.Redact(cmd))
		c.events.add(api.Event{Type: "hook", Reason: env.Redact(fmt.Sprintf("%s hook started: %s", name, cmd))})
		err := hooks.Run(ctx, hooks.Hook{Name: name, Command: cmd, Dir: dir, Env: base,
			Timeout: cfg.HookTimeout(), Redact: env.Redact}, log)
		var he *hooks.HookError
		if errors.As(err, &he) {
			return err // it names the hook
		}
		if err != nil {
			return fmt.Errorf("%s hook: %w", name, err)
		}
		c.events.add(api.Event{Type: "hook", Reason: fmt.Sprintf("%s hook succeeded", name)})
	}
	return nil
}

// unpackForHooks unpacks artifact digest into a new temp folder under the
// data directory and returns the tree and a function that removes it.
func (c *Controller) unpackForHooks(ctx context.Context, digest string) (string, func(), error) {
	if err := os.MkdirAll(c.cfg.DataDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("unpack the release for its hooks: %w", err)
	}
	parent, err := os.MkdirTemp(c.cfg.DataDir, hookDirPrefix)
	if err != nil {
		return "", nil, fmt.Errorf("unpack the release for its hooks: %w", err)
	}
	cleanup := func() {
		if err := os.RemoveAll(parent); err != nil {
			c.log.Warn("remove the hooks' unpacked release", "file", parent, "error", err)
		}
	}
	dir := filepath.Join(parent, "release")
	if err := c.o.Artifacts.Unpack(ctx, digest, dir); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("unpack the release for its hooks: %w", err)
	}
	return dir, cleanup, nil
}

// removeHookLeftovers removes the hooks' temp folders that a crash left
// in the data directory.
func (c *Controller) removeHookLeftovers() {
	ents, err := os.ReadDir(c.cfg.DataDir)
	if err != nil {
		return // no data directory yet: nothing left over
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), hookDirPrefix) {
			p := filepath.Join(c.cfg.DataDir, e.Name())
			if err := os.RemoveAll(p); err != nil {
				c.log.Warn("remove a leftover hook folder", "file", p, "error", err)
			}
		}
	}
}
