package dashboard

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// pageData is what every page template gets.
type pageData struct {
	Title   string
	Nav     string // which navigation entry is current
	CSRF    string
	Version string // static assets version
	Flash   string
	// Live is the query string of the page's event stream; empty for pages
	// that are not live.
	Live string
	Now  time.Time
	D    any
}

// pageNames are the page templates under assets/templates/pages.
var pageNames = []string{"login", "overview", "timeline", "releases", "confirm", "instance", "slow", "error"}

func (h *Handler) parseTemplates() {
	base := template.New("base").Funcs(h.funcs())
	base = template.Must(base.ParseFS(assetsFS, "assets/templates/*.html"))
	h.frags = base
	h.pages = make(map[string]*template.Template)
	for _, name := range pageNames {
		t := template.Must(template.Must(base.Clone()).ParseFS(assetsFS, "assets/templates/pages/"+name+".html"))
		h.pages[name] = t
	}
}

// render writes a whole page. A template error is a defect: it is logged
// and answered with 500 (the buffer keeps half a page from being sent).
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title string, d any) {
	h.renderLive(w, r, status, name, title, "", d)
}

func (h *Handler) renderLive(w http.ResponseWriter, r *http.Request, status int, name, title, live string, d any) {
	s := sessionOf(r)
	pd := pageData{Title: title, Nav: name, CSRF: s.csrf, Version: h.version, Live: live, Now: h.opts.Now(), D: d}
	if s.id != "" {
		pd.Flash = h.sessions.takeFlash(s.id)
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", pd); err != nil {
		h.log.Error("render dashboard page", "page", name, "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, status, "error", http.StatusText(status), struct {
		Status int
		Text   string
		Msg    string
	}{status, http.StatusText(status), msg})
}

// fragment renders the named fragment template to a string.
func (h *Handler) fragment(name string, d any) (string, error) {
	var buf bytes.Buffer
	if err := h.frags.ExecuteTemplate(&buf, name, d); err != nil {
		return "", fmt.Errorf("render fragment %s: %w", name, err)
	}
	return buf.String(), nil
}

func (h *Handler) funcs() template.FuncMap {
	return template.FuncMap{
		"icon":     icon,
		"stateTag": stateTag,
		"dur":      fmtDur,
		"span":     fmtSpan,
		"ms":       fmtMS,
		"bytes":    fmtBytes,
		"pct":      fmtPct,
		"num":      fmtNum,
		"cores":    func(v float64) string { return coresFormat(v)(v) },
		"clock":    func(t time.Time) string { return t.Format("15:04:05") },
		"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ago":      func(t time.Time) string { return fmtAgo(h.opts.Now().Sub(t)) },
		"percent": func(done, total int) int {
			if total <= 0 {
				return 0
			}
			return min(100, done*100/total)
		},
		"qs": func(kv ...string) string {
			v := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] != "" {
					v.Set(kv[i], kv[i+1])
				}
			}
			return v.Encode()
		},
		"version": func() string { return h.version },
		"short": func(s string, n int) string {
			if len(s) <= n {
				return s
			}
			return s[:n]
		},
	}
}

// fmtDur prints a duration with three significant digits in the unit a
// person reads fastest.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d/time.Microsecond)
	case d < time.Second:
		return trimZero(fmt.Sprintf("%.3g", float64(d)/float64(time.Millisecond))) + " ms"
	case d < time.Minute:
		return trimZero(fmt.Sprintf("%.3g", d.Seconds())) + " s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// fmtMS prints a duration in milliseconds, for columns of numbers.
func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

func trimZero(s string) string {
	if strings.Contains(s, ".") && !strings.ContainsAny(s, "e") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func fmtAgo(d time.Duration) string {
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n), "B"
	for _, next := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if f < unit {
			break
		}
		f, u = f/unit, next
	}
	return trimZero(fmt.Sprintf("%.3g", f)) + " " + u
}

func fmtPct(f float64) string {
	if f == 0 {
		return "0%"
	}
	if f < 0.001 {
		return "<0.1%"
	}
	return trimZero(fmt.Sprintf("%.3g", f*100)) + "%"
}

func fmtNum(f float64) string {
	switch {
	case math.IsNaN(f) || f == 0:
		return "0"
	case f < 10:
		return trimZero(fmt.Sprintf("%.2f", f))
	case f < 1000:
		return trimZero(fmt.Sprintf("%.1f", f))
	case f < 1e6:
		return trimZero(fmt.Sprintf("%.3g", f/1e3)) + "k"
	default:
		return trimZero(fmt.Sprintf("%.3g", f/1e6)) + "M"
	}
}

var _ fs.FS = assetsFS
