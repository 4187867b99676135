package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/shoal-dev/shoal/internal/api"
)

// printTiming writes where the time of the group's requests went, per
// route and per listener: the app's time (the target's time to first
// byte) beside the network's (the client connection's round trip), p50
// and p95 since the balancer started.
func printTiming(w io.Writer, ts []api.TimingStatus) {
	fmt.Fprintln(w, "time of requests since the balancer started (app: target's time to first byte; network: client round trip):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  \tREQUESTS\tAPP p50\tAPP p95\tRTT p50\tRTT p95")
	for _, t := range ts {
		app50, app95, rtt50, rtt95 := "-", "-", "-", "-"
		if t.AppSamples > 0 {
			app50, app95 = fmtMS(t.AppP50MS), fmtMS(t.AppP95MS)
		}
		if t.RTTSamples > 0 {
			rtt50, rtt95 = fmtMS(t.RTTP50MS), fmtMS(t.RTTP95MS)
		}
		fmt.Fprintf(tw, "  %s %s\t%d\t%s\t%s\t%s\t%s\n", t.Kind, t.Name, t.Requests, app50, app95, rtt50, rtt95)
	}
	tw.Flush()
}

// fmtMS writes milliseconds with three significant digits: "0.215 ms",
// "41.2 ms", "1250 ms".
func fmtMS(ms float64) string {
	prec := 0
	switch {
	case ms < 1:
		prec = 3
	case ms < 10:
		prec = 2
	case ms < 100:
		prec = 1
	}
	return strconv.FormatFloat(ms, 'f', prec, 64) + " ms"
}
