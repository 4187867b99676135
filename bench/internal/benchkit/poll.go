package benchkit

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
)

// WaitStatus polls c.Status every `every` until ok accepts an answer, and
// returns that answer. It gives up after timeout or when ctx ends, with
// an error "waiting for <what>: ..." and the last answer seen. Failed
// polls are retried.
func WaitStatus(ctx context.Context, c *client.Client, timeout, every time.Duration, what string, ok func(client.Status) bool) (client.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st, err := c.Status(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// LastSeq returns the sequence number of the newest event (0 when there
// is none), paging through at most 10000 pages of 500.
func LastSeq(ctx context.Context, c *client.Client) (uint64, error) {
	var after uint64
	for range 10000 {
		evs, err := c.Events(ctx, after, 500)
		if err != nil {
			return 0, fmt.Errorf("events: %w", err)
		}
		if len(evs) == 0 {
			return after, nil
		}
		after = evs[len(evs)-1].Seq
	}
	return after, nil
}
