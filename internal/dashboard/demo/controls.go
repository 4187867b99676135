package demo

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/shoal-dev/shoal/internal/dashboard"
)

// Controls returns a handler with the simulation's actions for tests and
// the dev command: POST /demo/kill?id=, POST /demo/deploy?app= (answers
// the new version), POST /demo/scale?app=&desired=. It has no
// authentication: serve it only on loopback, never next to real data.
func Controls(s *Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /demo/kill", func(w http.ResponseWriter, r *http.Request) {
		reply(w, s.Kill(r.FormValue("id")), "killed")
	})
	mux.HandleFunc("POST /demo/deploy", func(w http.ResponseWriter, r *http.Request) {
		v, err := s.Deploy(r.FormValue("app"))
		reply(w, err, strconv.Itoa(v))
	})
	mux.HandleFunc("POST /demo/scale", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.FormValue("desired"))
		if err != nil {
			http.Error(w, "desired must be a number", http.StatusBadRequest)
			return
		}
		reply(w, s.Scale(r.FormValue("app"), n, "requested by a test"), "scaled")
	})
	return mux
}

func reply(w http.ResponseWriter, err error, ok string) {
	switch {
	case err == nil:
		fmt.Fprintln(w, ok)
	case errors.Is(err, dashboard.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, dashboard.ErrConflict):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
