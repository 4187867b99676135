package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

type loginData struct {
	Next  string
	Error string
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, _, ok := h.sessions.get(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, "login", "Log in", loginData{Next: next})
}

// login checks the admin token. Attempts are rate-limited per client
// address before the token is looked at.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	next := safeNext(r.PostFormValue("next"))
	if ok, wait := h.logins.allow(r.RemoteAddr); !ok {
		secs := int(wait.Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		h.render(w, r, http.StatusTooManyRequests, "login", "Log in",
			loginData{Next: next, Error: fmt.Sprintf("Too many attempts. Try again in %d s.", secs)})
		return
	}
	// Compare hashes so the comparison takes the same time whatever the
	// lengths of the two tokens.
	got := sha256.Sum256([]byte(r.PostFormValue("token")))
	want := sha256.Sum256([]byte(h.opts.Token))
	if h.opts.Token == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		h.log.Warn("dashboard login failed", "remote", r.RemoteAddr)
		h.render(w, r, http.StatusUnauthorized, "login", "Log in",
			loginData{Next: next, Error: "That is not the admin token."})
		return
	}
	id, _ := h.sessions.create()
	http.SetCookie(w, sessionCookie(r, id, int(sessionTTL.Seconds())))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) error {
	h.sessions.delete(sessionOf(r).id)
	http.SetCookie(w, sessionCookie(r, "", -1))
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	return nil
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
