package adminapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/shoal-dev/shoal/internal/api"
)

// Errors that handlers return; WriteError maps them to statuses. Packages
// whose errors need a status other than 500 wrap one of these, or are added
// to statusOf.
var (
	ErrUnauthorized = errors.New("missing or wrong admin token")
	ErrNotFound     = errors.New("not found")
	ErrBadRequest   = errors.New("bad request")
	ErrConflict     = errors.New("conflict")
	ErrTooLarge     = errors.New("request body too large")
	// ErrUnavailable: not now, try again (a cluster with no leader yet).
	ErrUnavailable = errors.New("unavailable")
	// ErrTryAgain: a 503 that did nothing, with Retry-After: 1, on which
	// package client sends the call again (a write that reached a server
	// which no longer leads the cluster).
	ErrTryAgain = errors.New("nothing was done; try again")
	// ErrOutcomeUnknown: a 503 with api.OutcomeHeader: the call may have
	// been carried out all the same (a write proposed to the cluster
	// before its leader lost the lead may still commit). Read the state
	// before sending it again.
	ErrOutcomeUnknown = errors.New("outcome unknown")
)

// ErrorBody is the JSON body of every error response (package api's).
type ErrorBody = api.ErrorBody

// WithStatus gives err the status (and the headers, WriteError) of status,
// one of this package's sentinels, without adding the sentinel's text to
// err's message.
func WithStatus(status, err error) error { return &statusError{status: status, err: err} }

type statusError struct {
	status error // one of this package's sentinels
	err    error
}

func (e *statusError) Error() string   { return e.err.Error() }
func (e *statusError) Unwrap() []error { return []error{e.status, e.err} }

// statusOf is the one place where an error becomes an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrTryAgain), errors.Is(err, ErrOutcomeUnknown):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// WriteError writes err as a JSON error body with the status statusOf
// chooses. An unknown outcome (ErrOutcomeUnknown) sets api.OutcomeHeader;
// else ErrTryAgain sets Retry-After.
func WriteError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrOutcomeUnknown):
		w.Header().Set(api.OutcomeHeader, api.OutcomeUnknown)
	case errors.Is(err, ErrTryAgain):
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusOf(err))
	json.NewEncoder(w).Encode(ErrorBody{Error: err.Error()})
}

// WriteJSON writes v as JSON with status 200.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// HandlerFunc is an admin handler that returns an error instead of
// writing one; Handle adapts it.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle adapts f to http.Handler, writing any returned error through
// WriteError.
func Handle(f HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			WriteError(w, err)
		}
	})
}
