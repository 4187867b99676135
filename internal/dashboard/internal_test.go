package dashboard

import (
	"encoding/xml"
	"errors"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func wellFormed(t *testing.T, doc string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, doc)
		}
	}
}

func TestChartRender(t *testing.T) {
	nan := math.NaN()
	cases := []chart{
		{Title: "empty <&>"},
		{Title: "gaps", Step: time.Second, Lines: []chartLine{{Label: "a", Values: []float64{nan, 1, 2, nan, 3, nan}}}},
		{Title: "three", Step: 20 * time.Second, Lines: []chartLine{
			{Label: "p50", Values: []float64{0.01, 0.02}}, {Label: "p95", Values: []float64{0.02, 0.02}}, {Label: "p99\x01\"'", Values: []float64{0.5, 0.021}},
		}, Format: func(v float64) string { return fmtDur(time.Duration(v * float64(time.Second))) }},
		{Title: "all zero", Step: time.Second, Lines: []chartLine{{Label: "now", Values: []float64{0, 0, 0}}}, Empty: "No requests"},
	}
	for _, c := range cases {
		var b strings.Builder
		if err := c.render(&b); err != nil {
			t.Fatal(err)
		}
		wellFormed(t, b.String())
		if c.Title == "all zero" && !strings.Contains(b.String(), "No requests") {
			t.Error("an all-zero chart does not say it is empty")
		}
		if c.Title == "three" {
			for _, w := range []string{`stroke-dasharray="7 4"`, `stroke-dasharray="2 3"`, "p99", "21 ms"} {
				if !strings.Contains(b.String(), w) {
					t.Errorf("three-line chart lacks %q", w)
				}
			}
		}
	}
}

func TestNiceMax(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.7: 0.8, 1: 1, 1.1: 1.2, 7: 8, 45: 50, 101: 120, 9000: 10000} {
		if got := niceMax(in); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceMax(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestFormatters(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0", 250 * time.Microsecond: "250 µs", 12340 * time.Microsecond: "12.3 ms", 7200 * time.Millisecond: "7.2 s", 125 * time.Second: "2m05s", 3 * time.Hour: "3h00m"} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 134 << 20: "134 MiB"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := fmtPct(0.0127); got != "1.27%" {
		t.Errorf("fmtPct = %q", got)
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	lw := &lineWriter{send: func(s string) error { got = append(got, s); return nil }}
	io.WriteString(lw, "one\r\ntw")
	io.WriteString(lw, "o\nthree")
	if len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Fatalf("lines = %q", got)
	}
	io.WriteString(lw, strings.Repeat("x", maxLine+10))
	if len(got) != 3 || len(got[2]) != maxLine || !strings.HasPrefix(got[2], "three") {
		t.Fatalf("long line not cut at %d: %d lines", maxLine, len(got))
	}
}

func FuzzLineWriter(f *testing.F) {
	f.Add("a\nb\r\nc", 3)
	f.Add("\n\n\r\r", 1)
	f.Fuzz(func(t *testing.T, s string, chunk int) {
		if chunk <= 0 {
			chunk = 1
		}
		lw := &lineWriter{send: func(line string) error {
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("line %q has a line break (would break SSE framing)", line)
			}
			return nil
		}}
		for i := 0; i < len(s); i += chunk {
			lw.Write([]byte(s[i:min(i+chunk, len(s))]))
		}
	})
}

func FuzzParseChartQuery(f *testing.F) {
	f.Add("rps.svg", "app=web&window=15m")
	f.Add("cpu.svg", "instance=web-1")
	f.Add("latency.svg", "app=%zz&window=-1h")
	f.Fuzz(func(t *testing.T, file, rawQuery string) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return
		}
		cq, err := parseChartQuery(file, q)
		if err != nil {
			return
		}
		if !chartNames[cq.Name] || cq.Window < time.Minute || cq.Window > time.Hour {
			t.Fatalf("accepted %+v", cq)
		}
		var b strings.Builder
		if err := buildChart(nil, cq, time.Unix(1_700_000_000, 0)).render(&b); err != nil {
			t.Fatal(err)
		}
		wellFormed(t, b.String())
	})
}

func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/ui/", "/ui/releases?x=1", "//evil.example/", "/ui/\\evil", "https://evil.example/ui/", "/ui//evil.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(got, "/ui/") || strings.HasPrefix(got, "//") {
			t.Fatalf("safeNext(%q) = %q: not a local dashboard path", next, got)
		}
	})
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := &limiter{now: func() time.Time { return now }, burst: 2, interval: 10 * time.Second, buckets: map[string]*bucket{}}
	for i := range 2 {
		if ok, _ := l.allow("1.2.3.4:5555"); !ok {
			t.Fatalf("attempt %d refused", i)
		}
	}
	if ok, wait := l.allow("1.2.3.4:6666"); ok || wait != 10*time.Second {
		t.Fatalf("third attempt from the same host: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.allow("5.6.7.8:1"); !ok {
		t.Fatal("another host is limited too")
	}
	now = now.Add(10 * time.Second)
	if ok, _ := l.allow("1.2.3.4:1"); !ok {
		t.Fatal("no token after the interval")
	}
}

// TestChartTextFitsInside: the end labels of a latency chart ("p95 4.86
// ms") stay inside the chart's width, and a legend that would run into a
// long title moves to a row of its own (it spilled out of its card).
func TestChartTextFitsInside(t *testing.T) {
	dur := func(v float64) string { return fmtDur(time.Duration(v * float64(time.Second))) }
	for _, title := range []string{"Latency — api", "Latency — a-rather-long-application-name"} {
		c := chart{Title: title, Step: 20 * time.Second, Format: dur, Lines: []chartLine{
			{Label: "p50", Values: []float64{0.002, 0.00243}},
			{Label: "p95", Values: []float64{0.004, 0.00486}},
			{Label: "p99", Values: []float64{1.2, 1.51}},
		}}
		var b strings.Builder
		if err := c.render(&b); err != nil {
			t.Fatal(err)
		}
		type text struct {
			X, Y  float64
			Class string
			Body  string
		}
		var texts []text
		d := xml.NewDecoder(strings.NewReader(b.String()))
		for {
			tok, err := d.Token()
			if err != nil {
				break
			}
			se, ok := tok.(xml.StartElement)
			if !ok || se.Name.Local != "text" {
				continue
			}
			var tx text
			for _, a := range se.Attr {
				switch a.Name.Local {
				case "x":
					tx.X, _ = strconv.ParseFloat(a.Value, 64)
				case "y":
					tx.Y, _ = strconv.ParseFloat(a.Value, 64)
				case "class":
					tx.Class = a.Value
				}
			}
			if cd, ok := must(d.Token()).(xml.CharData); ok {
				tx.Body = string(cd)
			}
			texts = append(texts, tx)
		}
		var titleEnd float64
		for _, tx := range texts {
			if tx.Class == "h" {
				titleEnd = tx.X + textWidth(tx.Body, titleCharW)
			}
		}
		for _, tx := range texts {
			cw := labelCharW
			if tx.Class == "lab" {
				cw = boldCharW
			}
			if tx.Class == "lab" && tx.X+textWidth(tx.Body, cw) > chartW {
				t.Errorf("%s: end label %q at x=%.0f runs past the chart's width %d", title, tx.Body, tx.X, chartW)
			}
			if tx.Class == "" && tx.Y == 16 && tx.X < titleEnd {
				t.Errorf("%s: legend %q at x=%.0f overlaps the title (ends at %.0f)", title, tx.Body, tx.X, titleEnd)
			}
		}
	}
}

func must(tok xml.Token, _ error) xml.Token { return tok }
