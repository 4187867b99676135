package dashboard

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/timeseries"
)

// chartPoints is how many steps a chart has, whatever its window.
const chartPoints = 180

// chartQuery is a parsed chart request: /ui/chart/{name}.svg?app=&route=
// &instance=&window=.
type chartQuery struct {
	Name     string // rps, errors, latency, cpu, rss
	App      string
	Route    string
	Instance string
	Window   time.Duration
}

var chartNames = map[string]bool{"rps": true, "errors": true, "latency": true, "cpu": true, "rss": true}

// parseChartQuery validates a chart request. The window defaults to an
// hour and must be between one minute and an hour; request charts need an
// app, instance charts an instance.
func parseChartQuery(file string, q url.Values) (chartQuery, error) {
	name, ok := strings.CutSuffix(file, ".svg")
	if !ok || !chartNames[name] {
		return chartQuery{}, fmt.Errorf("%w: no chart %q", ErrNotFound, file)
	}
	cq := chartQuery{Name: name, App: q.Get("app"), Route: q.Get("route"), Instance: q.Get("instance"), Window: time.Hour}
	if w := q.Get("window"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < time.Minute || d > timeseries.Window {
			return chartQuery{}, fmt.Errorf("%w: window %q must be a duration from 1m to 1h", errBadRequest, w)
		}
		cq.Window = d
	}
	switch name {
	case "cpu", "rss":
		if cq.Instance == "" {
			return chartQuery{}, fmt.Errorf("%w: chart %s needs an instance", errBadRequest, name)
		}
	default:
		if cq.App == "" {
			return chartQuery{}, fmt.Errorf("%w: chart %s needs an app", errBadRequest, name)
		}
	}
	return cq, nil
}

// buildChart reads the series for cq from store, ending at now.
func buildChart(store *timeseries.Store, cq chartQuery, now time.Time) chart {
	step := max(cq.Window/chartPoints, time.Second)
	// End at the last finished second; align to the step so points do not
	// shift between refreshes.
	end := now.Truncate(step)
	if cq.Name == "cpu" || cq.Name == "rss" {
		// A gauge's current step already holds its latest value; without
		// it a new instance would show nothing for a whole step.
		end = end.Add(step)
	}
	from := end.Add(-cq.Window)
	c := chart{Start: from, Step: step}
	if store == nil {
		store = timeseries.NewStore(timeseries.Options{})
	}
	switch cq.Name {
	case "cpu", "rss":
		name := timeseries.InstanceCPU(cq.Instance)
		c.Title, c.Empty = "CPU (cores)", "No CPU samples yet"
		if cq.Name == "rss" {
			name = timeseries.InstanceRSS(cq.Instance)
			c.Title, c.Format, c.Empty = "Memory (resident)", func(v float64) string { return fmtBytes(int64(v)) }, "No memory samples yet"
		}
		pts := store.Gauge(name, from, end, step)
		vals := make([]float64, len(pts))
		top := 0.0
		for i, p := range pts {
			vals[i] = math.NaN()
			if p.OK {
				vals[i] = p.Value
				top = max(top, p.Value)
			}
		}
		if cq.Name == "cpu" {
			// The axis has 4 intervals up to niceMax(top): print enough
			// decimals for the smallest one, so an idle instance's
			// 0.003 cores do not all read 0.00.
			c.Format = coresFormat(niceMax(top) / 4)
		}
		c.Lines = []chartLine{{Values: vals}}
		c.ZeroIsData = true
		return c
	}
	key := timeseries.Key{Group: cq.App, Route: cq.Route}
	pts := store.Range(key, from, end, step)
	what := cq.App
	if cq.Route != "" {
		what += " " + cq.Route
	}
	switch cq.Name {
	case "rps":
		vals := make([]float64, len(pts))
		for i, p := range pts {
			vals[i] = p.RPS
		}
		c.Title, c.Empty = "Requests per second", "No requests in this window"
		c.Lines = []chartLine{{Values: vals}}
	case "errors":
		vals := make([]float64, len(pts))
		for i, p := range pts {
			vals[i] = p.ErrorRate()
		}
		c.Title, c.Format, c.Empty = "Error rate (5xx)", fmtPct, "No errors in this window"
		c.Lines = []chartLine{{Values: vals}}
	case "latency":
		p50, p95, p99 := make([]float64, len(pts)), make([]float64, len(pts)), make([]float64, len(pts))
		for i, p := range pts {
			if p.Requests == 0 {
				p50[i], p95[i], p99[i] = math.NaN(), math.NaN(), math.NaN()
				continue
			}
			p50[i], p95[i], p99[i] = p.P50.Seconds(), p.P95.Seconds(), p.P99.Seconds()
		}
		c.Title, c.Empty = "Latency", "No requests in this window"
		c.Format = func(v float64) string { return fmtDur(time.Duration(v * float64(time.Second))) }
		c.Lines = []chartLine{{Label: "p50", Values: p50}, {Label: "p95", Values: p95}, {Label: "p99", Values: p99}}
	}
	c.Title += " — " + what
	return c
}

func (h *Handler) chart(w http.ResponseWriter, r *http.Request) error {
	cq, err := parseChartQuery(r.PathValue("name"), r.URL.Query())
	if err != nil {
		return err
	}
	c := buildChart(h.opts.Source.Series(), cq, h.opts.Now())
	w.Header().Set("Content-Type", "image/svg+xml")
	return c.render(w)
}

// coresFormat returns a formatter of CPU cores with two significant
// digits of unit (at least 2 decimals, at most 4).
func coresFormat(unit float64) func(float64) string {
	prec := 2
	if unit > 0 && unit < 0.1 {
		prec = min(4, int(-math.Floor(math.Log10(unit)))+1)
	}
	return func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
}
