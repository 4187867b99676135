// Package dashboard serves Shoal's web dashboard under /ui/ on the admin
// listener: an overview of every group with live charts, the events
// timeline, releases with rollback, one instance with its live log tail, and
// the slow requests with their time split into queue, time to first byte
// and transfer.
//
// It reads everything through a Source, so it does not depend on the
// controller; the controller's adapter implements Source. Pages are
// rendered on the server with html/template; a small script embedded with
// the templates keeps them live over Server-Sent Events (the server sends
// re-rendered HTML fragments and new events) and refreshes the charts, which
// are SVG drawn by this package. No third-party code and no CDN.
//
// The dashboard does its own authentication, so it must not sit behind the
// admin API's bearer-token middleware: the login form takes the admin token
// and sets an HttpOnly, SameSite=Strict session cookie scoped to /ui.
// State-changing requests (rollback, logout) are POSTs that need the
// session's CSRF token and a same-host Origin (or Referer). Login attempts
// are rate-limited per client address.
package dashboard

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

//go:embed assets
var assetsFS embed.FS

// Options configures the dashboard.
type Options struct {
	// Token is the admin token that logs in. Empty refuses every login.
	Token string
	// Source provides what the pages show. Required.
	Source Source
	// Logger receives request errors. Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Interval is how often live pages get updates. Zero means one second.
	Interval time.Duration
}

// Handler is the dashboard's http.Handler; mount it at "/ui/" (it serves
// only paths under /ui/). It is safe for concurrent use.
type Handler struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	sessions *sessions
	logins   *limiter
	pages    map[string]*template.Template
	frags    *template.Template
	static   fs.FS
	version  string // hash of the static assets, for cache busting

	// done ends every open stream when closed by Close; mu guards closed
	// so that no stream starts after Close began waiting.
	done    chan struct{}
	mu      sync.Mutex
	closed  bool
	streams sync.WaitGroup
}

// New returns the dashboard handler. It panics if Source is nil or the
// embedded templates do not parse (a build defect, caught by the tests).
func New(opts Options) *Handler {
	if opts.Source == nil {
		panic("dashboard: Options.Source is nil")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	static, err := fs.Sub(assetsFS, "assets/static")
	if err != nil {
		panic(err)
	}
	h := &Handler{
		opts:     opts,
		log:      log,
		mux:      http.NewServeMux(),
		sessions: &sessions{now: opts.Now, m: make(map[string]session)},
		logins:   &limiter{now: opts.Now, burst: 5, interval: 10 * time.Second, buckets: make(map[string]*bucket)},
		static:   static,
		version:  hashFS(static),
		done:     make(chan struct{}),
	}
	h.parseTemplates()
	h.routes()
	return h
}

// Close ends every open live stream (event streams and log tails) and
// waits for their handlers to return. Call it before http.Server.Shutdown,
// which does not end streaming responses by itself. The Handler keeps
// serving pages after Close, but new streams end at once.
func (h *Handler) Close() error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	h.mu.Unlock()
	h.streams.Wait()
	return nil
}

// startStream registers a stream that Close waits for; false after Close.
func (h *Handler) startStream() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.streams.Add(1)
	return true
}

func (h *Handler) routes() {
	m := h.mux
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.HandlerFunc(h.serveStatic)))
	m.HandleFunc("GET /ui/login", h.loginPage)
	m.HandleFunc("POST /ui/login", h.login)
	m.HandleFunc("POST /ui/logout", h.action(h.logout))

	m.HandleFunc("GET /ui/{$}", h.page(h.overview))
	m.HandleFunc("GET /ui/timeline", h.page(h.timeline))
	m.HandleFunc("GET /ui/releases", h.page(h.releases))
	m.HandleFunc("GET /ui/releases/{app}/rollback", h.page(h.rollbackConfirm))
	m.HandleFunc("POST /ui/releases/{app}/rollback", h.action(h.rollback))
	m.HandleFunc("GET /ui/instances/{id}", h.page(h.instance))
	m.HandleFunc("GET /ui/slow", h.page(h.slow))

	m.HandleFunc("GET /ui/events", h.api(h.events))
	m.HandleFunc("GET /ui/instances/{id}/logs", h.api(h.logs))
	m.HandleFunc("GET /ui/chart/{name}", h.api(h.chart))
	m.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		h.renderError(w, r, http.StatusNotFound, "There is no page at this address.")
	})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

type ctxKey struct{}

// sessionInfo is the logged-in session of a request.
type sessionInfo struct {
	id   string
	csrf string
}

func sessionOf(r *http.Request) sessionInfo {
	s, _ := r.Context().Value(ctxKey{}).(sessionInfo)
	return s
}

// page wraps a handler of an HTML page: without a session it redirects to
// the login form, which comes back here afterwards.
func (h *Handler) page(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, sess, ok := h.sessions.get(r)
		if !ok {
			http.Redirect(w, r, "/ui/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, sessionInfo{id: id, csrf: sess.csrf}))
		if err := fn(w, r); err != nil {
			h.handleError(w, r, err)
		}
	}
}

// api wraps a handler of data (streams, charts): without a session it
// answers 401.
func (h *Handler) api(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, sess, ok := h.sessions.get(r)
		if !ok {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, sessionInfo{id: id, csrf: sess.csrf}))
		if err := fn(w, r); err != nil {
			h.log.Warn("dashboard request failed", "path", r.URL.Path, "error", err)
			http.Error(w, err.Error(), statusOf(err))
		}
	}
}

// action wraps a state-changing POST: it needs a session, a same-host
// Origin or Referer, and the session's CSRF token. Anything missing is 403
// (401 without a session).
func (h *Handler) action(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		id, sess, ok := h.sessions.get(r)
		if !ok {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		if !sameOrigin(r) {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		if !validCSRF(r, sess) {
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, sessionInfo{id: id, csrf: sess.csrf}))
		if err := fn(w, r); err != nil {
			h.handleError(w, r, err)
		}
	}
}

// errBadRequest marks errors caused by the request's parameters.
var errBadRequest = errors.New("bad request")

// statusOf is the one place where an error becomes an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

func (h *Handler) handleError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		h.log.Error("dashboard page failed", "path", r.URL.Path, "error", err)
	}
	h.renderError(w, r, status, err.Error())
}

func (h *Handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("v") == h.version {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.FileServerFS(h.static).ServeHTTP(w, r)
}

// hashFS returns a short hash of every file in fsys.
func hashFS(fsys fs.FS) string {
	sum := sha256.New()
	fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := fsys.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		io.WriteString(sum, path)
		_, err = io.Copy(sum, f)
		return err
	})
	return hex.EncodeToString(sum.Sum(nil))[:12]
}
