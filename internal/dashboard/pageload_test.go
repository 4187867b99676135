package dashboard_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/dashboard"
	"github.com/shoal-dev/shoal/internal/dashboard/demo"
	"github.com/shoal-dev/shoal/internal/timeseries"
)

// pageLoadSource is the demo with a page-load report.
type pageLoadSource struct {
	*demo.Source
	pl *timeseries.PageLoad
}

func (s *pageLoadSource) PageLoad() *timeseries.PageLoad { return s.pl }

// TestPageLoadReport: the slow-requests page shows, per route, the bytes
// before and after compression, the cache's hits and ratio, the estimated
// time saved with its definition, in its own section; a source
// without a report shows no section.
func TestPageLoadReport(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	pl := timeseries.NewPageLoad(c.t.Add(-time.Hour))
	pl.Record(timeseries.PageLoadSample{Group: "web", Route: "/", Cache: "stored", BodyBytes: 2 << 20, SentBytes: 2 << 20,
		TargetTime: 400 * time.Millisecond, ClientTime: 4 * time.Second})
	for range 3 {
		pl.Record(timeseries.PageLoadSample{Group: "web", Route: "/", Cache: "hit", BodyBytes: 2 << 20, SentBytes: 512 << 10, ClientTime: time.Second})
	}
	src := &pageLoadSource{Source: demo.New(demo.Options{Seed: 1, StartTicks: 1, Now: c.Now}), pl: pl}
	ui := dashboard.New(dashboard.Options{Token: token, Source: src, Now: c.Now, Interval: 20 * time.Millisecond})
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ui.Close()
		srv.Close()
	})
	e := &env{t: t, src: src.Source, ui: ui, srv: srv, now: c}
	cl, _ := e.login()
	_, body := e.get(cl, "/ui/slow")
	// 8 MiB of body, 3.5 MiB sent; 3 of 4 lookups hit; the target's
	// median 400ms; 3.5 MiB in 7 s = 512 KiB/s; saved: 3 x 400ms + 4.5 MiB
	// at 512 KiB/s = 1.2 s + 9 s.
	for _, want := range []string{
		`<section class="card" id="page-load">`,
		`Page-load report <small>since 2026-03-04T04:06:07Z</small>`,
		`<td data-label="Body" class="num">8 MiB</td>`,
		`<td data-label="Sent" class="num">3.5 MiB</td>`,
		`<td data-label="Cache hits" class="num">3 of 4</td>`,
		`<td data-label="Hit ratio" class="num">75%</td>`,
		`<td data-label="Target median" class="num">400 ms</td>`,
		`<td data-label="Client throughput" class="num">512 KiB/s</td>`,
		`<b>10.2 s</b> <small class="muted">cache 1.2 s · compression 9 s</small>`,
		`hits × the target's median time`,
		`<b>estimate</b>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the slow page lacks %q", want)
		}
	}
	if strings.Count(body, `id="page-load"`) != 1 {
		t.Errorf("the report is not shown once")
	}

	// Without a report: no section.
	e2 := newEnv(t, false)
	cl2, _ := e2.login()
	if _, body := e2.get(cl2, "/ui/slow"); strings.Contains(body, `id="page-load"`) {
		t.Errorf("a source without a page-load report shows one")
	}
}
