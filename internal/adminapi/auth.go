// Package adminapi serves Shoal's admin HTTP API: bearer-token
// authentication on every route, one place that maps errors to HTTP
// statuses, and the routes of the balancer and the controller.
package adminapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// TokenFile is the name of the token file under a data directory.
const TokenFile = "admin.token"

// LoadOrCreateToken returns the admin token stored at path, creating it
// with a fresh random value (mode 0600, written atomically) when it does
// not exist. A token file readable by group or others is refused.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("stat token: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("token file %s has mode %v: it must not be readable by others (chmod 600)", path, fi.Mode().Perm())
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create token dir: %w", err)
	}
	if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save token: %w", err)
	}
	return tok, nil
}

// RequireToken wraps h so that every request must carry
// "Authorization: Bearer <token>"; others get 401 with a
// WWW-Authenticate header. The comparison is constant-time. An empty token
// rejects every request.
func RequireToken(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal"`)
			WriteError(w, ErrUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// AppHeader is the header in which WithApp names the app on every answer.
// It matches client.AppHeader (this package does not import the client).
const AppHeader = "Shoal-App"

// WithApp wraps h so that every answer, a 401 of RequireToken included,
// names the app in AppHeader. The name is no secret; it lets a client that
// reached the admin port of another app's shoal say so instead of
// reporting a wrong token.
func WithApp(app string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(AppHeader, app)
		h.ServeHTTP(w, r)
	})
}
