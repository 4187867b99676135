package dashboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/shoal-dev/shoal/internal/timeseries"
)

// groupView is a group with the figures the overview prints.
type groupView struct {
	Group
	InService int
	Healthy   int
	// Last is the group's traffic over the last 10 seconds.
	Last timeseries.Point
	// Chart is the query string of the group's charts.
	Chart template.URL
}

// groupViews returns the views of every group, or only app's when app is
// set.
func (h *Handler) groupViews(r *http.Request, app string) ([]groupView, error) {
	groups, err := h.opts.Source.Groups(r.Context())
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	if app != "" {
		groups = slices.DeleteFunc(groups, func(g Group) bool { return g.App != app })
	}
	now := h.opts.Now()
	store := h.opts.Source.Series()
	views := make([]groupView, len(groups))
	for i, g := range groups {
		v := groupView{Group: g, Chart: template.URL(url.Values{"app": {g.App}}.Encode())}
		for _, in := range g.Instances {
			if in.State == StateInService {
				v.InService++
			}
		}
		for _, t := range g.Targets {
			if t.State == "healthy" {
				v.Healthy++
			}
		}
		if store != nil {
			if pts := store.Range(timeseries.Key{Group: g.App}, now.Add(-10*time.Second), now, 10*time.Second); len(pts) > 0 {
				v.Last = pts[0]
			}
		}
		views[i] = v
	}
	return views, nil
}

// recentEvents returns up to n events matching keep, newest first.
func (h *Handler) recentEvents(r *http.Request, n int, keep func(Event) bool) ([]Event, uint64, error) {
	evs, err := h.opts.Source.Events(r.Context(), 0, 500)
	if err != nil {
		return nil, 0, fmt.Errorf("list events: %w", err)
	}
	var last uint64
	out := make([]Event, 0, n)
	for i := len(evs) - 1; i >= 0; i-- {
		last = max(last, evs[i].Seq)
		if keep(evs[i]) && len(out) < n {
			out = append(out, evs[i])
		}
	}
	return out, last, nil
}

func liveQuery(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	return v.Encode()
}

// overview shows every group, or with ?app= one app's page: its group,
// its events and the hosts card.
func (h *Handler) overview(w http.ResponseWriter, r *http.Request) error {
	app := r.URL.Query().Get("app")
	groups, err := h.groupViews(r, app)
	if err != nil {
		return err
	}
	if app != "" && len(groups) == 0 {
		return fmt.Errorf("there is no app %s: %w", app, ErrNotFound)
	}
	events, last, err := h.recentEvents(r, 12, eventFilter("", app, ""))
	if err != nil {
		return err
	}
	fleet, err := h.fleetView(r.Context())
	if err != nil {
		return err
	}
	h.renderLive(w, r, http.StatusOK, "overview", "Overview",
		liveQuery("view", "overview", "app", app, "after", strconv.FormatUint(last, 10)),
		struct {
			Groups []groupView
			Events []Event
			Fleet  *Fleet
		}{groups, events, fleet})
	return nil
}

// fleetEvents is how many host events the hosts card shows.
const fleetEvents = 10

// fleetView returns the source's fleet for the hosts card (nil: no card),
// its events cut to the newest fleetEvents.
func (h *Handler) fleetView(ctx context.Context) (*Fleet, error) {
	f, err := h.opts.Source.Fleet(ctx)
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	if f != nil && len(f.Events) > fleetEvents {
		cut := *f
		cut.Events = f.Events[:fleetEvents]
		f = &cut
	}
	return f, nil
}

// eventKinds are the kinds the timeline filter offers.
var eventKinds = []string{KindDeploy, KindScale, KindReplace, KindHealth, KindState}

func (h *Handler) timeline(w http.ResponseWriter, r *http.Request) error {
	kind, app := r.URL.Query().Get("kind"), r.URL.Query().Get("app")
	keep := eventFilter(kind, app, "")
	events, last, err := h.recentEvents(r, 200, keep)
	if err != nil {
		return err
	}
	h.renderLive(w, r, http.StatusOK, "timeline", "Events",
		liveQuery("view", "timeline", "kind", kind, "app", app, "after", strconv.FormatUint(last, 10)),
		struct {
			Events []Event
			Kinds  []string
			Kind   string
			App    string
		}{events, eventKinds, kind, app})
	return nil
}

// eventFilter keeps events of kind, app and instance; empty matches all.
func eventFilter(kind, app, instance string) func(Event) bool {
	return func(e Event) bool {
		return (kind == "" || e.Kind == kind) && (app == "" || e.App == app) && (instance == "" || e.Instance == instance)
	}
}

// releasesView is one app's releases with its deploy.
type releasesView struct {
	App      string
	Current  int
	Deploy   *Deploy
	Releases []Release
}

func (h *Handler) releaseViews(r *http.Request) ([]releasesView, error) {
	groups, err := h.opts.Source.Groups(r.Context())
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	out := make([]releasesView, 0, len(groups))
	for _, g := range groups {
		rels, err := h.opts.Source.Releases(r.Context(), g.App)
		if err != nil {
			return nil, fmt.Errorf("list releases of %s: %w", g.App, err)
		}
		cur := g.Release
		if g.Deploy != nil && g.Deploy.Active {
			cur = g.Deploy.From
		}
		out = append(out, releasesView{App: g.App, Current: cur, Deploy: g.Deploy, Releases: rels})
	}
	return out, nil
}

func (h *Handler) releases(w http.ResponseWriter, r *http.Request) error {
	views, err := h.releaseViews(r)
	if err != nil {
		return err
	}
	h.renderLive(w, r, http.StatusOK, "releases", "Releases", liveQuery("view", "releases"), views)
	return nil
}

type confirmView struct {
	App     string
	Current int
	Target  Release
	Error   string
}

// rollbackTarget finds the release the rollback form names.
func (h *Handler) rollbackTarget(r *http.Request, version string) (confirmView, error) {
	app := r.PathValue("app")
	v, err := strconv.Atoi(version)
	if err != nil || v <= 0 {
		return confirmView{}, fmt.Errorf("%w: version %q is not a release number", errBadRequest, version)
	}
	rels, err := h.opts.Source.Releases(r.Context(), app)
	if err != nil {
		return confirmView{}, fmt.Errorf("list releases of %s: %w", app, err)
	}
	cv := confirmView{App: app}
	found := false
	for _, rel := range rels {
		if rel.Version == v {
			cv.Target, found = rel, true
		}
		if rel.Status == "current" {
			cv.Current = rel.Version
		}
	}
	if !found {
		return confirmView{}, fmt.Errorf("%w: %s has no release %d", ErrNotFound, app, v)
	}
	return cv, nil
}

func (h *Handler) rollbackConfirm(w http.ResponseWriter, r *http.Request) error {
	cv, err := h.rollbackTarget(r, r.URL.Query().Get("version"))
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "confirm", "Roll back "+cv.App, cv)
	return nil
}

func (h *Handler) rollback(w http.ResponseWriter, r *http.Request) error {
	cv, err := h.rollbackTarget(r, r.PostFormValue("version"))
	if err != nil {
		return err
	}
	if err := h.opts.Source.Rollback(r.Context(), cv.App, cv.Target.Version); err != nil {
		if errors.Is(err, ErrConflict) {
			cv.Error = err.Error()
			h.render(w, r, http.StatusConflict, "confirm", "Roll back "+cv.App, cv)
			return nil
		}
		return fmt.Errorf("roll back %s to %d: %w", cv.App, cv.Target.Version, err)
	}
	h.log.Info("rollback started from the dashboard", "app", cv.App, "release", cv.Target.Version)
	h.sessions.setFlash(sessionOf(r).id, fmt.Sprintf("Rollback of %s to release %d started.", cv.App, cv.Target.Version))
	http.Redirect(w, r, "/ui/releases#app-"+url.PathEscape(cv.App), http.StatusSeeOther)
	return nil
}

type instanceView struct {
	InstanceDetail
	Chart template.URL
}

func (h *Handler) instance(w http.ResponseWriter, r *http.Request) error {
	d, err := h.opts.Source.Instance(r.Context(), r.PathValue("id"))
	if err != nil {
		return fmt.Errorf("instance %s: %w", r.PathValue("id"), err)
	}
	var last uint64
	evs := slices.Clone(d.Events)
	slices.Reverse(evs)
	d.Events = evs
	if all, err := h.opts.Source.Events(r.Context(), 0, 1); err == nil && len(all) > 0 {
		last = all[len(all)-1].Seq
	}
	h.renderLive(w, r, http.StatusOK, "instance", "Instance "+d.ID,
		liveQuery("view", "instance", "id", d.ID, "after", strconv.FormatUint(last, 10)),
		instanceView{InstanceDetail: d, Chart: template.URL(url.Values{"instance": {d.ID}}.Encode())})
	return nil
}

// slowView is the slow-requests page.
type slowView struct {
	Window   string
	Windows  []string
	Routes   []timeseries.Summary
	Requests []slowRow
	// PageLoad is the page-load report; nil when the source keeps none.
	PageLoad *pageLoadView
}

// pageLoadView is the page-load report section of the slow-requests
// page (pageload.html).
type pageLoadView struct {
	Since time.Time
	Rows  []pageLoadRow
}

// pageLoadRow is one route of the report, with the figures the template
// shows as they are formatted.
type pageLoadRow struct {
	timeseries.PageLoadRoute
	Lookups    int64
	Throughput int64 // bytes per second, 0 when not measured
}

// pageLoadData is the source's page-load report, nil without one.
func (h *Handler) pageLoadData() *pageLoadView {
	ps, ok := h.opts.Source.(PageLoadSource)
	if !ok {
		return nil
	}
	pl := ps.PageLoad()
	if pl == nil {
		return nil
	}
	v := &pageLoadView{Since: pl.Since()}
	for _, r := range pl.Report() {
		v.Rows = append(v.Rows, pageLoadRow{PageLoadRoute: r, Lookups: r.Hits + r.Misses, Throughput: int64(r.Throughput)})
	}
	return v
}

// slowRow is a slow request with its bar segments, in percent of the
// slowest request on the page.
type slowRow struct {
	timeseries.SlowRequest
	Other                          time.Duration // Total not covered by the three parts
	QueueW, TTFBW, TransferW, OthW float64
	Dominant                       string
}

// TTFBX is where the transfer segment of the bar starts, in percent.
func (r slowRow) TTFBX() float64 { return r.QueueW + r.TTFBW }

var slowWindows = []string{"5m", "15m", "1h"}

func (h *Handler) slowData(window string) slowView {
	if !slices.Contains(slowWindows, window) {
		window = "15m"
	}
	d, _ := time.ParseDuration(window)
	now := h.opts.Now()
	v := slowView{Window: window, Windows: slowWindows, PageLoad: h.pageLoadData()}
	if store := h.opts.Source.Series(); store != nil {
		for _, k := range store.Keys() {
			if k.Route == "" {
				continue
			}
			if s := store.Summarize(k, now, d); s.Requests > 0 {
				v.Routes = append(v.Routes, s)
			}
		}
	}
	slices.SortFunc(v.Routes, func(a, b timeseries.Summary) int {
		return cmp.Or(cmp.Compare(b.P99, a.P99), cmp.Compare(a.Key.Group, b.Key.Group), cmp.Compare(a.Key.Route, b.Key.Route))
	})
	reqs := h.opts.Source.Slow()
	var top time.Duration
	for _, q := range reqs {
		top = max(top, q.Total)
	}
	for _, q := range reqs {
		row := slowRow{SlowRequest: q}
		row.Other = max(0, q.Total-q.Queue-q.TTFB-q.Transfer)
		if row.Other*100 < q.Total {
			// The phases are timed separately from the total: a
			// remainder under 1% is clock granularity, not a phase.
			row.Other = 0
		}
		if top > 0 {
			f := func(d time.Duration) float64 { return 100 * float64(d) / float64(top) }
			row.QueueW, row.TTFBW, row.TransferW, row.OthW = f(q.Queue), f(q.TTFB), f(q.Transfer), f(row.Other)
		}
		row.Dominant = "target (time to first byte)"
		switch max(q.Queue, q.TTFB, q.Transfer) {
		case q.Queue:
			row.Dominant = "waiting at the balancer"
		case q.Transfer:
			row.Dominant = "transfer to the client"
		}
		v.Requests = append(v.Requests, row)
	}
	return v
}

func (h *Handler) slow(w http.ResponseWriter, r *http.Request) error {
	v := h.slowData(r.URL.Query().Get("window"))
	h.renderLive(w, r, http.StatusOK, "slow", "Slow requests", liveQuery("view", "slow", "window", v.Window), v)
	return nil
}
