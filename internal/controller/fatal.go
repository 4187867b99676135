package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/release"
)

// fatalError is the cause with which Run's loop is cancelled when carrying
// on could only repeat a failure: Run shuts down and returns err.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// failOn ends Run with err when err from starting an instance of release
// rel means nothing can serve in this run: the artifact file of the current
// release is corrupt (release.ErrCorrupt; the file has been moved aside, so
// the next start rebuilds it from an unchanged source, see resumeActive,
// or the operator rolls back) and no instance is in service. Retrying
// would only crash-loop. It does nothing while instances serve (stopping
// would take them down: they keep serving and replacements back off, each
// failure an event) or while a rollout runs (cannotStart has failed the
// rollout, which returns to the release that serves). Other errors are
// left to the usual replacement with backoff.
func (c *Controller) failOn(err error, rel int) {
	if !errors.Is(err, release.ErrCorrupt) || c.stopRun == nil {
		return
	}
	c.mu.Lock()
	serving := false
	for _, in := range c.instances {
		serving = serving || in.state == api.InService
	}
	keep := serving || c.dep.active != nil || c.current.Version != rel
	c.mu.Unlock()
	if keep {
		return
	}
	c.events.add(api.Event{Type: "shoal", Release: rel, Reason: "stopping: " + err.Error()})
	c.log.Error("stopping: an artifact is corrupt", "error", err)
	c.stopRun(&fatalError{fmt.Errorf("cannot start instances of release v%d: %w", rel, err)})
}

// fatalCause returns the error a fatalError carried into ctx, or nil.
func fatalCause(ctx context.Context) error {
	var fe *fatalError
	if errors.As(context.Cause(ctx), &fe) {
		return fe.err
	}
	return nil
}
