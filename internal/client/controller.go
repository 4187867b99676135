package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/shoal-dev/shoal/internal/api"
)

// The answers of the controller's routes are the types of the one
// vocabulary (package api, a leaf: the client still links no daemon); the
// names here keep the client's callers reading as before.
type (
	// Status is the answer of GET /v1/status and POST /v1/scale: the group
	// of a `shoal up` and its instances.
	Status = api.Status
	// Instance is one instance in Status.
	Instance = api.InstanceStatus
	// Crash is an instance's exit that nobody asked for, in Status.
	Crash = api.Crash
	// Event is one recorded change, as GET /v1/events lists them.
	Event = api.Event
	// Release is one release, as GET /v1/releases lists them (newest
	// first), secrets redacted.
	Release = api.ReleaseInfo
)

// Status returns the group and its instances.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Scale sets the desired instance count and returns the new status. A
// count outside the group's min-max is a 400 *APIError.
func (c *Client) Scale(ctx context.Context, desired int) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodPost, "/v1/scale", api.ScaleRequest{Desired: &desired}, &st)
	return st, err
}

// Events returns up to limit events with a sequence number above after,
// oldest first.
func (c *Client) Events(ctx context.Context, after uint64, limit int) ([]Event, error) {
	var evs []Event
	q := url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(limit)}}
	err := c.do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, &evs)
	return evs, err
}

// Releases returns the stored releases, newest first.
func (c *Client) Releases(ctx context.Context) ([]Release, error) {
	var rels []Release
	err := c.do(ctx, http.MethodGet, "/v1/releases", nil, &rels)
	return rels, err
}

// openStream sends a GET whose answer is read as it arrives; the caller
// closes the body. A non-2xx answer is an *APIError.
func (c *Client) openStream(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.get(ctx, path)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// get sends a GET and returns its answer, whose body the caller reads and
// closes. A non-2xx answer is an *APIError.
func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("admin api: %w", err)
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, apiError(resp.StatusCode, data)
	}
	return resp, nil
}
