package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/shoal-dev/shoal/internal/api"
)

// ServerStatus is one server of a Raft cluster (Servers).
type ServerStatus = api.ServerStatus

// Servers lists the servers of the cluster the server belongs to, each
// with its own view of itself (role, term, last contact, applied index).
func (c *Client) Servers(ctx context.Context) ([]ServerStatus, error) {
	var out []ServerStatus
	err := c.do(ctx, http.MethodGet, "/v1/servers", nil, &out)
	return out, err
}

// AddServer adds server id, whose raft listener is at addr, as a voter
// (through the leader), and returns the servers then.
func (c *Client) AddServer(ctx context.Context, id, addr string) ([]ServerStatus, error) {
	var out []ServerStatus
	err := c.do(ctx, http.MethodPost, "/v1/servers", api.ServerAddRequest{ID: id, Address: addr}, &out)
	return out, err
}

// RemoveServer removes server id from the cluster (through the leader).
func (c *Client) RemoveServer(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/servers/"+url.PathEscape(id), nil, nil)
}

// ClusterCA fetches the fleet CA of the cluster (certificate and key),
// which a server joining it installs (`shoal server --join`); any server
// answers. Send it only over a verified connection (Options.CAPin for
// an https URL): the answer holds the CA's private key.
func (c *Client) ClusterCA(ctx context.Context) (api.ClusterCA, error) {
	var out api.ClusterCA
	err := c.do(ctx, http.MethodGet, "/v1/cluster/ca", nil, &out)
	return out, err
}

// Self returns the server's own view of itself in its cluster (GET
// /v1/cluster/self: role, term, leader, last contact, applied index),
// always answered by that server, never forwarded to the leader.
func (c *Client) Self(ctx context.Context) (ServerStatus, error) {
	var out ServerStatus
	err := c.do(ctx, http.MethodGet, "/v1/cluster/self", nil, &out)
	return out, err
}
