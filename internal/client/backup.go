package client

import (
	"context"
	"fmt"
	"io"

	"github.com/shoal-dev/shoal/internal/api"
)

// Backup copies the whole desired state of a `shoal server` (GET
// /v1/backup: a cluster's leader answers, a follower forwards) to w, and
// returns the bytes copied. A refusal is an *APIError (404 from an admin
// API without backups, such as `shoal up`'s); an answer that is not a
// store file, or shorter than its Content-Length, is an error. w may hold
// part of a copy on error: write to a temporary file, and check it
// (store.Verify) before keeping it.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.get(ctx, "/v1/backup")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != api.BackupContentType {
		return 0, fmt.Errorf("admin api: GET /v1/backup answered %q, not a backup (%s): is %s a shoal server?", ct, api.BackupContentType, c.base)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("admin api: GET /v1/backup: %w", err)
	}
	return n, nil
}
