package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/runtime"
)

// ErrConflict is returned (wrapped) for a start of an instance id that runs
// another artifact or command, or that this agent was asked to stop
// (stoppedIDs).
var ErrConflict = errors.New("conflict")

// maxBody bounds a request body (a launch spec with its environment).
const maxBody = 1 << 20

// handler is an endpoint that returns its error for answer to map.
type handler func(w http.ResponseWriter, r *http.Request) error

// serve turns h into an http.Handler whose errors are answered through
// statusOf; a server error is logged too.
func (a *Agent) serve(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil || r.Context().Err() != nil {
			return // done, or nobody is listening
		}
		status := statusOf(err)
		if status >= http.StatusInternalServerError {
			a.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
		}
		writeError(w, status, err.Error())
	})
}

// mutating admits the request's term (api.TermHeader) through the fence
// before h acts.
func (a *Agent) mutating(h handler) http.Handler {
	return a.serve(func(w http.ResponseWriter, r *http.Request) error {
		v := r.Header.Get(api.TermHeader)
		if v == "" {
			return fmt.Errorf("%w: %s %s needs the leader's term in the %s header", ErrBadRequest, r.Method, r.URL.Path, api.TermHeader)
		}
		term, err := strconv.ParseUint(v, 10, 64)
		if err != nil || term == 0 {
			return fmt.Errorf("%w: %s header %q is not a positive term", ErrBadRequest, api.TermHeader, v)
		}
		if err := a.fence.admit(term); err != nil {
			var st *StaleTermError
			if errors.As(err, &st) {
				w.Header().Set(api.TermHeader, strconv.FormatUint(st.Current, 10))
				a.log.Warn("request of an older term refused", "path", r.URL.Path, "term", st.Got, "current_term", st.Current)
			}
			return err
		}
		// One line per admitted action with the term it carried: the
		// host's own record of which leader drove it.
		a.log.Info("leader action admitted", "method", r.Method, "path", r.URL.Path, "term", term)
		return h(w, r)
	})
}

// statusOf is the one map from the agent's errors to HTTP statuses.
func statusOf(err error) int {
	var fe *FetchError
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, runtime.ErrNotFound), errors.Is(err, dockerrt.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrNoEngine):
		return http.StatusNotImplemented
	case errors.Is(err, ErrStaleTerm), errors.Is(err, ErrConflict), errors.Is(err, runtime.ErrExists):
		return http.StatusConflict
	case errors.Is(err, ErrExitsGone):
		return http.StatusGone
	case errors.Is(err, release.ErrTooLarge):
		return http.StatusUnprocessableEntity
	case errors.As(err, &fe):
		return http.StatusBadGateway
	case errors.Is(err, runtime.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, api.ErrorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body into v, refusing unknown fields and trailing data.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: decode body: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the body", ErrBadRequest)
	}
	return nil
}
