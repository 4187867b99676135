package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/backup", nil)
	if err != nil {
		return 0, fmt.Errorf("admin api: %w", err)
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return 0, apiError(resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != api.BackupContentType {
		return 0, fmt.Errorf("admin api: GET /v1/backup answered %q, not a backup (%s): is %s a shoal server?", ct, api.BackupContentType, c.base)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("admin api: GET /v1/backup: %w", err)
	}
	return n, nil
}
