package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"
)

// Following a stream (FollowEvents, Logs with follow) across the moves
// of a cluster's leader. A follower forwards the stream to the leader and
// ends it when the leader changes (the forward's watch, issue 14); a
// server that stops ends it too. So a stream that ends while the caller
// still follows is opened again, at once (the follower waits for the new
// leader itself, and its 503s are sent again, client.doRetrying), from
// where the last one ended:
//
//	stream --ends (cleanly or broken)--> open again from the cursor --ok--> stream ...
//	                                          | fails
//	                                          v
//	                       the last stream ended cleanly and nothing answers: nil (the server stopped)
//	                       else: an error saying the stream ended and why it cannot be opened again
//
// A stream that ends within reopenCalm of its opening is opened again
// after reopenCalm, so a server that ends every stream at once is not
// called in a loop.
const reopenCalm = time.Second

// FollowEvents calls fn for every event after after, oldest first, as
// they happen, until ctx ends (returning nil) or fn returns an error
// (returned). A stream that ends is opened again after the last event fn
// was given (see above), so across a leader's move no event is lost or
// given twice; FollowEvents returns nil when it ended cleanly and the
// server no longer answers, and an error when it cannot be opened again.
func (c *Client) FollowEvents(ctx context.Context, after uint64, fn func(Event) error) error {
	return c.follow(ctx, func() string {
		q := url.Values{"after": {strconv.FormatUint(after, 10)}, "follow": {"true"}}
		return "/v1/events?" + q.Encode()
	}, func(body io.Reader) error {
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue // keepalive
			}
			var e Event
			if err := json.Unmarshal(line, &e); err != nil {
				return fmt.Errorf("admin api: decode event: %w", err)
			}
			if err := fn(e); err != nil {
				return &callerError{err: err}
			}
			after = e.Seq
		}
		return sc.Err()
	})
}

// Logs copies the last tail lines of an instance's output to w and, with
// follow, new lines as they come until ctx ends (then it returns nil). A
// followed stream that ends is opened again for the lines that come from
// then on (see above): the lines the instance wrote while no stream was
// open, during a leader's move, are not copied.
func (c *Client) Logs(ctx context.Context, id string, tail int, follow bool, w io.Writer) error {
	path := func() string {
		q := url.Values{"tail": {strconv.Itoa(tail)}}
		if follow {
			q.Set("follow", "true")
		}
		return "/v1/instances/" + url.PathEscape(id) + "/logs?" + q.Encode()
	}
	read := func(body io.Reader) error {
		tail = 0 // a stream opened again starts at its end
		_, err := io.Copy(&errWriter{w: w}, body)
		return err
	}
	if !follow {
		body, err := c.openStream(ctx, path())
		if err != nil {
			return err
		}
		defer body.Close()
		err = read(body)
		var ce *callerError
		if errors.As(err, &ce) {
			return ce.err
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("admin api: logs: %w", err)
		}
		return nil
	}
	return c.follow(ctx, path, read)
}

// follow opens path() and reads it with read, again and again while ctx
// lasts (see above). read returns the stream's error (nil when it ended
// cleanly), or a *callerError, which ends the follow with its error.
func (c *Client) follow(ctx context.Context, path func() string, read func(io.Reader) error) error {
	var ended error // why the last stream ended; nil: cleanly
	for opens := 0; ; opens++ {
		body, err := c.openStream(ctx, path())
		if err != nil {
			switch {
			case opens == 0:
				return err
			case ctx.Err() != nil:
				return nil
			case ended == nil && errors.As(err, new(*UnreachableError)):
				return nil // the server ended the stream and stopped
			}
			return fmt.Errorf("admin api: the stream ended (%s) and cannot be opened again: %w", why(ended), err)
		}
		opened := time.Now()
		err = read(body)
		body.Close()
		var ce *callerError
		if errors.As(err, &ce) {
			return ce.err
		}
		if ctx.Err() != nil {
			return nil
		}
		ended = err
		if time.Since(opened) < reopenCalm {
			t := time.NewTimer(reopenCalm)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

func why(err error) string {
	if err == nil {
		return "the server ended it"
	}
	return err.Error()
}

// callerError is an error of the follower's caller (its callback, its
// writer), not of the stream: it ends the follow and is returned as is.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }
func (e *callerError) Unwrap() error { return e.err }

// errWriter marks the errors of the writer it wraps as callerErrors.
type errWriter struct{ w io.Writer }

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		return n, &callerError{err: err}
	}
	return n, nil
}
