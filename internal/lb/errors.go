package lb

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"

	"github.com/shoal-dev/shoal/internal/h1"
	"github.com/shoal-dev/shoal/internal/pool"
)

// Errors the proxy answers itself.
var (
	errNoRoute    = errors.New("no route matches this host and path")
	errURITooLong = errors.New("request URI too long")
	errMethod     = errors.New("method not supported by the balancer")
	// errBadMethod is a method that is not an RFC 9110 token.
	errBadMethod = errors.New("malformed request method")
	// errRequestLineTooLong is a request line over Limits.MaxRequestLine.
	errRequestLineTooLong = errors.New("request line too long")
	// errHeadTooLarge is a request head over Limits.MaxHeaderBytes.
	errHeadTooLarge = errors.New("request header fields too large")
)

// clientBodyError is a failure to read the client's request body.
type clientBodyError struct{ err error }

func (e clientBodyError) Error() string { return "read request body: " + e.err.Error() }
func (e clientBodyError) Unwrap() error { return e.err }

// statusOf is the one place where a proxy error becomes an HTTP status.
func statusOf(err error) int {
	var (
		mbe *http.MaxBytesError
		se  *h1.FramingError
		ne  net.Error
	)
	switch {
	case errors.Is(err, errNoRoute):
		return http.StatusNotFound
	case errors.Is(err, errURITooLong), errors.Is(err, errRequestLineTooLong):
		return http.StatusRequestURITooLong
	case errors.Is(err, errBadMethod):
		return http.StatusBadRequest
	case errors.Is(err, errHeadTooLarge):
		return http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, pool.ErrNoTarget), errors.Is(err, errQueueTimeout):
		return http.StatusServiceUnavailable
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &se):
		return http.StatusBadRequest
	case errors.As(err, new(clientBodyError)):
		return http.StatusBadRequest
	case errors.Is(err, pool.ErrDrainDeadline):
		return http.StatusBadGateway
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// fail answers the client with the status of err and a short body
// (answerFor).
func (b *Balancer) fail(w http.ResponseWriter, ex *exchange, err error) {
	ex.err = err
	a := answerFor(err, ex.closeAfter)
	ex.status = a.status
	if ex.grpc {
		// The access log and metrics keep the HTTP status; the client
		// reads it as grpc-status.
		failGRPC(w, a.status, a.msg)
		return
	}
	h := w.Header()
	if a.close {
		h["Connection"] = []string{"close"}
	}
	h["Content-Type"] = []string{errorContentType}
	h["X-Content-Type-Options"] = []string{errorNoSniff}
	h["Content-Length"] = []string{strconv.Itoa(len(a.msg) + 1)}
	w.WriteHeader(a.status)
	n, _ := w.Write([]byte(a.msg + "\n"))
	ex.bytesOut += int64(n)
}
