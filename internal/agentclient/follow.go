package agentclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

// Follower reads an agent's exits in order, each once, across lost
// connections and restarts of the agent's listener. Create it with
// FollowExits; it is not safe for concurrent use (one reader calls Next).
// It starts no goroutine.
type Follower struct {
	c     *Client
	epoch string
	seq   uint64
	// OnRetry, when set, is called with every error Next retries after
	// (the agent unreachable, a broken connection, a 5xx answer), so the
	// caller can log it or count it toward the host's health.
	OnRetry func(err error)
	// MaxBackoff bounds the wait between retries; zero means 5 s.
	MaxBackoff time.Duration
}

// FollowExits returns a Follower of the exits of epoch after the sequence
// number after: the cursor of an api.InstanceList, or of an earlier
// Follower. An empty epoch with after 0 follows the agent's current epoch
// from its first exit.
func (c *Client) FollowExits(epoch string, after uint64) *Follower {
	return &Follower{c: c, epoch: epoch, seq: after}
}

// Cursor returns the epoch and the sequence number of the last exit Next
// returned (or the ones FollowExits was given).
func (f *Follower) Cursor() (epoch string, seq uint64) { return f.epoch, f.seq }

// Next returns the next exits, oldest first, at least one, waiting as long
// as it takes: it long-polls, and retries after transport errors and 5xx
// answers with a backoff (100 ms doubling to MaxBackoff) from the same
// cursor, so an exit is neither lost nor repeated across reconnects. It
// returns ctx's error when ctx ends, an error wrapping ErrExitsGone when the
// agent no longer holds the exits after the cursor (some were dropped, or
// the agent restarted: list the instances and follow from the list's
// cursor), and any other error of the agent's (a *StatusError) as is. The
// cursor advances only past exits returned.
func (f *Follower) Next(ctx context.Context) ([]api.InstanceExit, error) {
	maxBackoff := f.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Second
	}
	backoff := 100 * time.Millisecond
	for {
		page, err := f.c.Exits(ctx, f.epoch, f.seq)
		if err == nil {
			backoff = 100 * time.Millisecond
			exits, err := f.take(page)
			if err != nil || len(exits) > 0 {
				return exits, err
			}
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !transient(err) {
			return nil, err
		}
		if f.OnRetry != nil {
			f.OnRetry(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// take checks a page against the cursor and advances the cursor past it.
func (f *Follower) take(page api.ExitsPage) ([]api.InstanceExit, error) {
	if f.epoch != "" && page.Epoch != f.epoch {
		return nil, fmt.Errorf("agent %s: exits: %w: answered epoch %s, asked %s", f.c.addr, ErrExitsGone, page.Epoch, f.epoch)
	}
	next := f.seq + 1
	for i, x := range page.Exits {
		if x.Seq != next+uint64(i) {
			return nil, fmt.Errorf("agent %s: exits: exit %s has sequence number %d, want %d: the agent broke the sequence", f.c.addr, x.ID, x.Seq, next+uint64(i))
		}
	}
	f.epoch = page.Epoch
	if n := len(page.Exits); n > 0 {
		f.seq = page.Exits[n-1].Seq
	}
	return page.Exits, nil
}

// transient reports whether a request may succeed when sent again: the
// agent did not answer, or answered a server error.
func transient(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status >= http.StatusInternalServerError
	}
	// A certificate that does not verify will not verify next time.
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	return !errors.As(err, &cv) && !errors.As(err, &ua) && !errors.As(err, &hn)
}
