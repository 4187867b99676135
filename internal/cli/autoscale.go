package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
)

// runAutoscale is `shoal autoscale [status|pause|resume] [-json]`.
func runAutoscale(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("autoscale", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	af := addUpFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	verb := "status"
	if len(args) > 0 && (args[0] == "status" || args[0] == "pause" || args[0] == "resume") {
		verb, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return &UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return usagef("usage: shoal autoscale [status|pause|resume]; unexpected %q", fs.Arg(0))
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var a client.Autoscale
	switch verb {
	case "status":
		a, err = c.Autoscale(ctx)
	default:
		a, err = c.PauseAutoscale(ctx, verb == "pause")
		if client.IsStatus(err, http.StatusConflict) {
			return &UsageError{Err: apiErr(err)}
		}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, a)
	}
	if verb != "status" {
		fmt.Fprintf(env.Stdout, "auto scaling %sd\n", verb)
	}
	printAutoscale(env.Stdout, a)
	return nil
}

// printAutoscale prints the state and each policy's value against its
// target.
func printAutoscale(w io.Writer, a client.Autoscale) {
	if !a.Enabled {
		fmt.Fprintln(w, "autoscale: not configured (add an autoscale section to shoal.yaml)")
		return
	}
	state := a.State
	if state == "" {
		state = "starting"
	}
	fmt.Fprintf(w, "autoscale: %s, desired %d (min %d, max %d), window %s, stabilization %s, warmup %s\n",
		state, a.Desired, a.Min, a.Max, secs(a.WindowSeconds), secs(a.StabilizationSeconds), secs(a.WarmupSeconds))
	if a.Held != "" {
		fmt.Fprintf(w, "  holding: %s\n", a.Held)
	}
	if ch := a.LastChange; ch != nil {
		fmt.Fprintf(w, "  last change %s ago: %s\n", time.Since(ch.Time).Round(time.Second), ch.Reason)
	}
	if len(a.Policies) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  POLICY\tMETRIC\tVALUE\tTARGET\tWANTS\tNOTE")
	for _, p := range a.Policies {
		value := "-"
		if p.OK {
			value = metricValue(p.Metric, p.Value)
		}
		target := "-"
		if p.Kind == "target_tracking" {
			target = metricValue(p.Metric, p.Target)
		} else {
			target = p.Kind
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", p.Name, p.Metric, value, target, p.Wants, p.Note)
	}
	tw.Flush()
}

// metricValue formats v in the unit of metric: "412ms", "60%", "48.2".
func metricValue(metric string, v float64) string {
	switch metric {
	case "latency_p95", "latency_p99":
		return time.Duration(v * float64(time.Second)).Round(time.Millisecond).String()
	case "cpu":
		return strconv.FormatFloat(v*100, 'f', 0, 64) + "%"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func secs(s float64) string { return time.Duration(s * float64(time.Second)).String() }
