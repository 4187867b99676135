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

// failOn ends Run with err when err from starting an instance means no
// instance of that release can start in this run: its artifact file is
// corrupt (release.ErrCorrupt; the file has been moved aside, so a restart
// rebuilds it from an unchanged source, or the operator rolls back).
// Retrying would only crash-loop. Other errors are left to the usual
// replacement with backoff.
func (c *Controller) failOn(err error, rel int) {
	if !errors.Is(err, release.ErrCorrupt) || c.stopRun == nil {
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
