package dashboard

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// chartLine is one line of a chart. NaN values are gaps.
type chartLine struct {
	Label  string
	Values []float64
}

// chart is a line chart over time, drawn as standalone SVG. Lines differ
// by dash pattern and are labelled at their last value, so the chart reads
// without colour.
type chart struct {
	Title  string
	Start  time.Time
	Step   time.Duration
	Lines  []chartLine
	Format func(float64) string // axis and label values
	// Empty is printed when no line has a value.
	Empty string
	// ZeroIsData makes a zero a value (a gauge's sample: an idle
	// instance uses 0 cores); otherwise zeros alone read as no data (no
	// requests).
	ZeroIsData bool
}

const (
	chartW, chartH         = 440, 210
	padL, padR, padT, padB = 60, 84, 32, 24
	// legendRowH is how far the legend moves down when it does not fit
	// beside the title (the plot moves down with it).
	legendRowH = 16
	// Estimated advance per character (px) of the chart's fonts: the 12 px
	// labels (bold: end labels) and the 13 px bold title. Generous, so
	// that text measured with them fits with any sans-serif font.
	labelCharW, boldCharW, titleCharW = 7.0, 7.6, 8.2
)

// textWidth estimates the width of s drawn with characters of advance cw.
func textWidth(s string, cw float64) float64 { return cw * float64(utf8.RuneCountInString(s)) }

// legendItemW is the width of one legend entry: its dash sample and label.
func legendItemW(label string) float64 { return 34 + textWidth(label, labelCharW) }

// lastLabel is the text printed after a line's last value.
func lastLabel(l chartLine, format func(float64) string) (string, bool) {
	for i := len(l.Values) - 1; i >= 0; i-- {
		if v := l.Values[i]; !math.IsNaN(v) {
			if l.Label != "" {
				return l.Label + " " + format(v), true
			}
			return format(v), true
		}
	}
	return "", false
}

// layout returns the plot's top, width and height: the plot gives up
// width on the right for the widest end label (so "p95 4.86 ms" stays
// inside the chart) and moves down when the legend takes a row of its
// own below the title.
func (c chart) layout(format func(float64) string, hasData bool) (top, width, height int) {
	right := float64(padR)
	if hasData {
		for _, l := range c.Lines {
			if t, ok := lastLabel(l, format); ok {
				right = max(right, 6+textWidth(t, boldCharW)+4)
			}
		}
	}
	right = min(right, chartW/2)
	top = padT
	if len(c.Lines) > 1 {
		legendW := 0.0
		for _, l := range c.Lines {
			legendW += legendItemW(l.Label)
		}
		if float64(padL)+textWidth(c.Title, titleCharW)+12 > float64(chartW-6)-legendW {
			top += legendRowH
		}
	}
	width = chartW - padL - int(math.Ceil(right))
	return top, width, chartH - top - padB
}

// lineStyles are the stroke colour (Okabe-Ito, safe for colour-blind
// readers) and dash pattern of the 1st, 2nd and 3rd line.
var lineStyles = [...]struct{ color, dash string }{
	{"#0b5cad", ""},
	{"#b35900", "7 4"},
	{"#b3261e", "2 3"},
}

// niceMax returns a round number >= v for the top of the axis.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*exp >= v {
			return m * exp
		}
	}
	return 10 * exp
}

// render writes the chart as an SVG document.
func (c chart) render(w io.Writer) error {
	var b strings.Builder
	top := 0.0
	n := 0
	for _, l := range c.Lines {
		n = max(n, len(l.Values))
		for _, v := range l.Values {
			if !math.IsNaN(v) {
				top = max(top, v)
			}
		}
	}
	hasData := false
	for _, l := range c.Lines {
		for _, v := range l.Values {
			if !math.IsNaN(v) && (v != 0 || c.ZeroIsData) {
				hasData = true
			}
		}
	}
	top = niceMax(top)
	format := c.Format
	if format == nil {
		format = fmtNum
	}
	pT, pW, pH := c.layout(format, hasData)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="t">`, chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<title id="t">%s</title>`, xmlEscape(c.Title))
	b.WriteString(`<style>text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;fill:#44505c}.h{font-weight:600;fill:#1b2530;font-size:13px}.g{stroke:#e3e8ee}.a{stroke:#9aa5b1}.lab{font-weight:600}</style>`)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`, chartW, chartH)
	fmt.Fprintf(&b, `<text class="h" x="%d" y="16">%s</text>`, padL, xmlEscape(c.Title))

	// Legend, right-aligned on the title line, with each line's dash; on
	// a line of its own below the title when they would overlap.
	if len(c.Lines) > 1 {
		ly := 12.0
		if pT > padT { // layout gave the legend a row of its own
			ly += legendRowH
		}
		lx := float64(chartW - 6)
		for i := len(c.Lines) - 1; i >= 0; i-- {
			st := lineStyles[i%len(lineStyles)]
			lx -= legendItemW(c.Lines[i].Label)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5" stroke-dasharray="%s"/>`, lx, ly, lx+22, ly, st.color, st.dash)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, lx+26, ly+4, xmlEscape(c.Lines[i].Label))
		}
	}

	// Grid and y axis: 4 intervals.
	for i := 0; i <= 4; i++ {
		y := float64(pT) + float64(pH)*float64(i)/4
		cls := "g"
		if i == 4 {
			cls = "a"
		}
		fmt.Fprintf(&b, `<line class="%s" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, cls, padL, y, padL+pW, y)
		if hasData {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, y+4, xmlEscape(format(top*float64(4-i)/4)))
		}
	}
	// X axis: minutes before the end.
	if n > 0 && c.Step > 0 {
		span := time.Duration(n) * c.Step
		ticks := 4
		for i := 0; i <= ticks; i++ {
			x := float64(padL) + float64(pW)*float64(i)/float64(ticks)
			ago := span - span*time.Duration(i)/time.Duration(ticks)
			label := "now"
			if ago > 0 {
				label = "−" + fmtSpan(ago)
			}
			anchor := "middle"
			if i == ticks {
				anchor = "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s">%s</text>`, x, chartH-8, anchor, label)
		}
	}
	if !hasData {
		msg := c.Empty
		if msg == "" {
			msg = "No data yet"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, padL+pW/2, pT+pH/2, xmlEscape(msg))
	}
	xAt := func(i int) float64 {
		if n <= 1 {
			return float64(padL + pW)
		}
		return float64(padL) + float64(pW)*float64(i)/float64(n-1)
	}
	yAt := func(v float64) float64 { return float64(pT) + float64(pH)*(1-v/top) }
	type endLabel struct {
		y    float64
		text string
		i    int
	}
	var ends []endLabel
	for li, l := range c.Lines {
		st := lineStyles[li%len(lineStyles)]
		var line strings.Builder
		last := -1
		for _, run := range runs(l.Values) {
			var d strings.Builder
			for k, i := range run {
				cmd := 'L'
				if k == 0 {
					cmd = 'M'
				}
				fmt.Fprintf(&d, "%c%.1f %.1f", cmd, xAt(i), yAt(l.Values[i]))
			}
			if len(c.Lines) == 1 && hasData {
				// One line: shade the area under it for weight.
				fmt.Fprintf(&b, `<path d="%sL%.1f %dL%.1f %dZ" fill="%s" fill-opacity="0.10"/>`,
					d.String(), xAt(run[len(run)-1]), pT+pH, xAt(run[0]), pT+pH, st.color)
			}
			line.WriteString(d.String())
			last = run[len(run)-1]
			if len(run) == 1 {
				// A lone point has no line to draw: mark it.
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, xAt(run[0]), yAt(l.Values[run[0]]), st.color)
			}
		}
		if last < 0 {
			continue
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" stroke-dasharray="%s"/>`, line.String(), st.color, st.dash)
		if hasData {
			text, _ := lastLabel(l, format)
			ends = append(ends, endLabel{y: yAt(l.Values[last]), text: text, i: li})
		}
	}
	// End labels, pushed apart so they do not overlap, and kept inside the
	// plot's height.
	slices.SortFunc(ends, func(a, b endLabel) int { return cmp.Compare(a.y, b.y) })
	for i := 1; i < len(ends); i++ {
		ends[i].y = max(ends[i].y, ends[i-1].y+13)
	}
	limit := float64(pT + pH)
	for i := len(ends) - 1; i >= 0; i-- {
		ends[i].y = min(ends[i].y, limit)
		limit = ends[i].y - 13
	}
	for _, e := range ends {
		fmt.Fprintf(&b, `<text class="lab" x="%d" y="%.1f" fill="%s">%s</text>`, padL+pW+6, e.y+4, lineStyles[e.i%len(lineStyles)].color, xmlEscape(e.text))
	}
	b.WriteString(`</svg>`)
	_, err := io.WriteString(w, b.String())
	return err
}

// runs returns the indexes of the continuous non-NaN runs of v.
func runs(v []float64) [][]int {
	var out [][]int
	var cur []int
	for i, x := range v {
		if math.IsNaN(x) {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, i)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func fmtSpan(d time.Duration) string {
	if d >= time.Minute {
		return fmt.Sprintf("%dm", int(d.Round(time.Minute)/time.Minute))
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

func xmlEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&#39;")
		default:
			if r < 0x20 && r != '\t' && r != '\n' {
				continue // not allowed in XML 1.0
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}
