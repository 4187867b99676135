package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/shoal-dev/shoal/internal/api"
)

// The server-wide calls of `shoal server`'s admin API: its apps, the
// fleet's hosts and join tokens. Their wire types are package api's.
type (
	// AppSummary is one app of a server (Apps).
	AppSummary = api.AppSummary
	// HostStatus is one host of a fleet (Hosts).
	HostStatus = api.HostStatus
	// JoinTokenAnswer is a new join token (JoinToken).
	JoinTokenAnswer = api.JoinTokenAnswer
)

// Apps lists the server's apps, sorted by name.
func (c *Client) Apps(ctx context.Context) ([]AppSummary, error) {
	var out []AppSummary
	err := c.do(ctx, http.MethodGet, "/v1/apps", nil, &out)
	return out, err
}

// Hosts lists the fleet's hosts, sorted by name.
func (c *Client) Hosts(ctx context.Context) ([]HostStatus, error) {
	var out []HostStatus
	err := c.do(ctx, http.MethodGet, "/v1/hosts", nil, &out)
	return out, err
}

// DrainHost stops placing instances on host name and returns its status;
// a 404 *APIError for an unknown host.
func (c *Client) DrainHost(ctx context.Context, name string) (HostStatus, error) {
	var out HostStatus
	err := c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(name)+"/drain", nil, &out)
	return out, err
}

// UndrainHost lets placement choose host name again and returns its
// status.
func (c *Client) UndrainHost(ctx context.Context, name string) (HostStatus, error) {
	var out HostStatus
	err := c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(name)+"/undrain", nil, &out)
	return out, err
}

// JoinToken makes a one-time join token for a node of role (agent when
// empty) that works for ttl ("1h"; empty: the server's default).
func (c *Client) JoinToken(ctx context.Context, role api.NodeRole, ttl string) (JoinTokenAnswer, error) {
	var out JoinTokenAnswer
	err := c.do(ctx, http.MethodPost, "/v1/join-tokens", api.JoinTokenRequest{Role: role, TTL: ttl}, &out)
	return out, err
}

// HostEvents returns up to limit (0: the server's default) events of the
// fleet with a sequence number above after, oldest first.
func (c *Client) HostEvents(ctx context.Context, after uint64, limit int) ([]Event, error) {
	q := url.Values{}
	q.Set("after", fmt.Sprint(after))
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out []Event
	err := c.do(ctx, http.MethodGet, "/v1/hosts/events?"+q.Encode(), nil, &out)
	return out, err
}
