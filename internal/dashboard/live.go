package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	heartbeat    = 15 * time.Second
	writeTimeout = 10 * time.Second
)

// sse writes Server-Sent Events to one response. Safe for concurrent use.
type sse struct {
	mu sync.Mutex
	w  http.ResponseWriter
	rc *http.ResponseController
	at time.Time // last write
}

func newSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sse{w: w, rc: http.NewResponseController(w)}
}

// send writes one event; id and name may be empty. data must not contain
// newlines (callers send JSON or single lines).
func (s *sse) send(id, name, data string) error {
	var b strings.Builder
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	if name != "" {
		b.WriteString("event: " + name + "\n")
	}
	b.WriteString("data: " + data + "\n\n")
	return s.raw(b.String())
}

func (s *sse) raw(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Extend the write deadline for this write only: a stream outlives any
	// server WriteTimeout, but a stuck client must not hold it forever.
	s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(s.w, text); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush event: %w", err)
	}
	s.at = time.Now()
	return nil
}

// ping writes a comment when nothing was written for a heartbeat, so
// proxies and the browser see the stream alive.
func (s *sse) ping() error {
	s.mu.Lock()
	idle := time.Since(s.at) >= heartbeat
	s.mu.Unlock()
	if !idle {
		return nil
	}
	return s.raw(": ping\n\n")
}

type fragmentMsg struct {
	ID   string `json:"id"`
	HTML string `json:"html"`
}

type eventMsg struct {
	Seq  uint64 `json:"seq"`
	Kind string `json:"kind"`
	HTML string `json:"html"`
}

// events streams a live page's updates: "fragment" events carry
// re-rendered parts of the page (only when they changed), "event" events
// carry new timeline entries. Query: view (overview, timeline, releases,
// instance, slow), app, id, kind, window, after (the last event seq the
// page has; Last-Event-ID wins on reconnect).
func (h *Handler) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	view := q.Get("view")
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil {
		after = id
	}
	keep := eventFilter(q.Get("kind"), q.Get("app"), q.Get("id"))
	if view != "instance" {
		keep = eventFilter(q.Get("kind"), q.Get("app"), "")
	}

	if !h.startStream() {
		http.Error(w, "the dashboard is shutting down", http.StatusServiceUnavailable)
		return nil
	}
	defer h.streams.Done()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream := newSSE(w)
	if err := stream.raw("retry: 2000\n\n"); err != nil {
		return nil // client went away
	}
	sent := map[string]string{}
	tick := time.NewTicker(h.opts.Interval)
	defer tick.Stop()
	for {
		if err := h.pushFragments(ctx, stream, view, q, sent); err != nil {
			h.log.Debug("dashboard stream ended", "error", err)
			return nil
		}
		if err := h.pushEvents(ctx, stream, &after, keep); err != nil {
			h.log.Debug("dashboard stream ended", "error", err)
			return nil
		}
		if err := stream.ping(); err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-h.done:
			return nil
		case <-tick.C:
		}
	}
}

// pushFragments sends the parts of view that changed since the last send.
func (h *Handler) pushFragments(ctx context.Context, s *sse, view string, q map[string][]string, sent map[string]string) error {
	frags, err := h.liveFragments(ctx, view, q)
	if err != nil {
		// A Source error is shown as a stale page, not a closed stream.
		h.log.Warn("dashboard live update failed", "view", view, "error", err)
		return nil
	}
	for _, f := range frags {
		if sent[f.ID] == f.HTML {
			continue
		}
		b, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("encode fragment: %w", err)
		}
		if err := s.send("", "fragment", string(b)); err != nil {
			return err
		}
		sent[f.ID] = f.HTML
	}
	return nil
}

// pushEvents sends the events after *after that keep accepts.
func (h *Handler) pushEvents(ctx context.Context, s *sse, after *uint64, keep func(Event) bool) error {
	evs, err := h.opts.Source.Events(ctx, *after, 100)
	if err != nil {
		h.log.Warn("dashboard events failed", "error", err)
		return nil
	}
	for _, e := range evs {
		if e.Seq <= *after {
			continue
		}
		*after = e.Seq
		if !keep(e) {
			continue
		}
		html, err := h.fragment("event-row", e)
		if err != nil {
			return err
		}
		b, err := json.Marshal(eventMsg{Seq: e.Seq, Kind: e.Kind, HTML: html})
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		if err := s.send(strconv.FormatUint(e.Seq, 10), "event", string(b)); err != nil {
			return err
		}
	}
	return nil
}

// liveFragments renders the live parts of a view. Each ID is the id of the
// element whose content the fragment replaces.
func (h *Handler) liveFragments(ctx context.Context, view string, query map[string][]string) ([]fragmentMsg, error) {
	get := func(k string) string {
		if v := query[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	r := (&http.Request{}).WithContext(ctx)
	var out []fragmentMsg
	add := func(id, tmpl string, d any) error {
		html, err := h.fragment(tmpl, d)
		if err != nil {
			return err
		}
		out = append(out, fragmentMsg{ID: id, HTML: html})
		return nil
	}
	switch view {
	case "overview":
		groups, err := h.groupViews(r)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			if err := add("group-"+g.App, "group", g); err != nil {
				return nil, err
			}
		}
		f, err := h.fleetView(ctx)
		if err != nil {
			return nil, err
		}
		if f != nil {
			if err := add("fleet", "fleet", f); err != nil {
				return nil, err
			}
		}
	case "releases":
		views, err := h.releaseViews(r)
		if err != nil {
			return nil, err
		}
		for _, v := range views {
			if err := add("releases-"+v.App, "releases-app", v); err != nil {
				return nil, err
			}
		}
	case "instance":
		d, err := h.opts.Source.Instance(ctx, get("id"))
		if err != nil {
			return nil, fmt.Errorf("instance %s: %w", get("id"), err)
		}
		if err := add("instance-"+d.ID, "instance-summary", d); err != nil {
			return nil, err
		}
	case "slow":
		if err := add("slow-body", "slow-body", h.slowData(get("window"))); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// logs streams an instance's log tail: one "log" event per line.
func (h *Handler) logs(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := h.opts.Source.Instance(r.Context(), id); err != nil {
		return fmt.Errorf("instance %s: %w", id, err)
	}
	lines := 200
	if n, err := strconv.Atoi(r.URL.Query().Get("lines")); err == nil && n > 0 {
		lines = min(n, 5000)
	}
	if !h.startStream() {
		http.Error(w, "the dashboard is shutting down", http.StatusServiceUnavailable)
		return nil
	}
	defer h.streams.Done()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream := newSSE(w)
	if err := stream.raw("retry: 2000\n\n"); err != nil {
		return nil
	}
	// The heartbeat goroutine is owned here and waited for below.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(heartbeat / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-h.done:
				cancel()
				return
			case <-t.C:
				if stream.ping() != nil {
					cancel()
					return
				}
			}
		}
	}()
	lw := &lineWriter{send: func(line string) error { return stream.send("", "log", line) }}
	err := h.opts.Source.LogTail(ctx, id, lines, true, lw)
	cancel()
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		stream.send("", "log-error", "log tail ended: "+err.Error())
		h.log.Warn("dashboard log tail failed", "instance", id, "error", err)
	}
	return nil
}

// lineWriter turns writes into one call of send per complete line. A line
// longer than maxLine is cut.
type lineWriter struct {
	buf  bytes.Buffer
	send func(string) error
}

const maxLine = 8 << 10

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.buf.Write(p)
	for {
		b := lw.buf.Bytes()
		i, skip := bytes.IndexByte(b, '\n'), 1
		if i < 0 {
			if len(b) <= maxLine {
				return len(p), nil
			}
			i, skip = maxLine, 0
		}
		line := strings.ReplaceAll(string(b[:i]), "\r", "")
		lw.buf.Next(i + skip)
		if err := lw.send(line); err != nil {
			return 0, err
		}
	}
}
