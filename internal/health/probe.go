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

// Prober sends single checks of one Spec: a GET of Spec.Path bounded by
// Spec.Timeout that passes on a status in Spec.Statuses. Checker uses it
// for every probe; callers that schedule probes themselves (the
// controller ramps its probes of a booting instance) use it directly. A
// Prober is safe for concurrent use.
type Prober struct {
	spec   Spec
	client *http.Client
}

// NewProber returns a Prober for spec (defaults applied). A nil client
// means the default one: keep-alives off, so every probe opens a new
// connection as a real client would, no proxy, no redirects followed.
func NewProber(spec Spec, client *http.Client) *Prober {
	spec = spec.WithDefaults()
	if client == nil {
		client = newClient(spec.Timeout)
	}
	return &Prober{spec: spec, client: client}
}

// Probe sends one check to addr (host:port) and returns whether it passed
// and why ("status 200", "timeout after 1s", "connection refused" ...).
func (p *Prober) Probe(ctx context.Context, addr string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, p.spec.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.spec.Path, nil)
	if err != nil {
		return false, fmt.Sprintf("bad request: %v", err)
	}
	if p.spec.Host != "" {
		req.Host = p.spec.Host
	}
	req.Header.Set("User-Agent", "shoal-health/1")
	resp, err := p.client.Do(req)
	if err != nil {
		return false, p.describe(ctx, err)
	}
	// Read what the target sent (bounded) so it sees a complete exchange,
	// then close; keep-alives are off, so nothing is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	reason := fmt.Sprintf("status %d", resp.StatusCode)
	return p.spec.passes(resp.StatusCode), reason
}

// describe turns a probe error into a short reason.
func (p *Prober) describe(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout after %s", p.spec.Timeout)
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
