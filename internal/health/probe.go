package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// maxDrain bounds how much of a probe's response body is read before it
// is closed.
const maxDrain = 64 << 10

func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // never probe through HTTP_PROXY
			DialContext:            (&net.Dialer{Timeout: timeout, KeepAlive: -1}).DialContext,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probe sends one check to addr and returns whether it passed and why.
func (c *Checker) probe(ctx context.Context, addr string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, c.spec.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+c.spec.Path, nil)
	if err != nil {
		return false, fmt.Sprintf("bad request: %v", err)
	}
	if c.spec.Host != "" {
		req.Host = c.spec.Host
	}
	req.Header.Set("User-Agent", "shoal-health/1")
	resp, err := c.client.Do(req)
	if err != nil {
		return false, c.describe(ctx, err)
	}
	// Read what the target sent (bounded) so it sees a complete exchange,
	// then close; keep-alives are off, so nothing is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	reason := fmt.Sprintf("status %d", resp.StatusCode)
	return c.spec.passes(resp.StatusCode), reason
}

// describe turns a probe error into a short reason.
func (c *Checker) describe(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout after %s", c.spec.Timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before response"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
