package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"
)

// probeTransport is shared by every probe: one idle connection per
// instance is kept, so a check is one request, not a handshake.
var probeTransport = &http.Transport{
	Proxy:               nil,
	MaxIdleConnsPerHost: 1,
	IdleConnTimeout:     30 * time.Second,
	DisableCompression:  true,
}

// probe runs one health check of the instance at addr: GET health.path,
// bounded by health.timeout, passing on a status in health.statuses. It
// returns the verdict and a short detail ("status 200", "connection
// refused", "timeout").
func (c *Controller) probe(ctx context.Context, addr string) (bool, string) {
	h := c.cfg.Health
	ctx, cancel := context.WithTimeout(ctx, h.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+h.Path, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "shoal-health")
	resp, err := probeTransport.RoundTrip(req)
	if err != nil {
		switch {
		case ctx.Err() == context.DeadlineExceeded:
			return false, fmt.Sprintf("timeout after %s", h.Timeout.D())
		case ctx.Err() != nil:
			return false, "canceled"
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return false, "connection refused"
		}
		return false, "connection failed"
	}
	// Drain a little so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	detail := fmt.Sprintf("status %d", resp.StatusCode)
	return h.Statuses.Contains(resp.StatusCode), detail
}
