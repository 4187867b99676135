package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pool"
)

// maxBody bounds every admin request body.
const maxBody = 64 << 10

// decodeBody decodes the JSON body of r into v strictly: unknown fields,
// trailing data and bodies over maxBody are errors (400). An empty body
// leaves v at its zero value.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSON(http.MaxBytesReader(w, r.Body, maxBody), v)
}

func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return as(ErrBadRequest, fmt.Errorf("request body larger than %d bytes", mbe.Limit))
		}
		return as(ErrBadRequest, fmt.Errorf("invalid JSON body: %w", err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return as(ErrBadRequest, errors.New("invalid JSON body: data after the JSON value"))
	}
	return nil
}

func badRequest(format string, a ...any) error {
	return as(ErrBadRequest, fmt.Errorf(format, a...))
}

// targetBody is the body of POST /v1/lb/pools/{pool}/targets, package
// api's type with its checks.
type targetBody api.TargetRequest

func (b targetBody) check() error {
	host, port, err := net.SplitHostPort(b.Addr)
	if err != nil || host == "" {
		return badRequest("addr %q: want host:port", b.Addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return badRequest("addr %q: invalid port", b.Addr)
	}
	if b.Weight < 0 || b.Weight > pool.MaxWeight {
		return badRequest("weight %d: want 1-%d (0 means 1)", b.Weight, pool.MaxWeight)
	}
	return nil
}

// weightBody is the body of PUT .../targets/{addr}/weight, package api's
// type with its check.
type weightBody api.WeightRequest

func (b weightBody) check() error {
	if b.Weight == nil {
		return badRequest("weight is required")
	}
	if *b.Weight < 1 || *b.Weight > pool.MaxWeight {
		return badRequest("weight %d: want 1-%d", *b.Weight, pool.MaxWeight)
	}
	return nil
}

// drainBody is the body of POST .../targets/{addr}/drain, package api's
// type with its check.
type drainBody api.DrainRequest

// maxDrain bounds a drain timeout given through the API.
const maxDrain = 24 * time.Hour

func (b drainBody) timeout() (time.Duration, error) {
	if b.Timeout == "" {
		return 0, nil // the pool's drain timeout
	}
	d, err := time.ParseDuration(b.Timeout)
	if err != nil || d < 0 || d > maxDrain {
		return 0, badRequest("timeout %q: want a duration such as 10s, at most 24h", b.Timeout)
	}
	return d, nil
}

// maintenanceBody is the body of POST /v1/lb/maintenance, package api's
// type with its check.
type maintenanceBody api.MaintenanceRequest

func (b maintenanceBody) check() (time.Duration, error) {
	if b.On == nil {
		return 0, badRequest(`"on" (true or false) is required`)
	}
	if b.RetryAfter == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(b.RetryAfter)
	if err != nil || d < 0 || d > maxDrain {
		return 0, badRequest("retry_after %q: want a duration such as 30s, at most 24h", b.RetryAfter)
	}
	return d, nil
}
