package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/client"
)

// newAutoscaleCmd is `shoal autoscale [status|pause|resume] [-o json]`.
func newAutoscaleCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:       "autoscale [status|pause|resume]",
		Short:     "show auto scaling, or pause or resume it",
		Args:      maxArgs(1),
		ValidArgs: []string{"status", "pause", "resume"},
	}
	af := addUpFlags(cmd.Flags())
	out := addOutputFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		verb := "status"
		if len(args) == 1 {
			verb = args[0]
		}
		if verb != "status" && verb != "pause" && verb != "resume" {
			return usagef("usage: shoal autoscale [status|pause|resume]; unexpected %q", verb)
		}
		asJSON, err := out.asJSON()
		if err != nil {
			return err
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		return runAutoscale(cmd.Context(), env, c, verb, asJSON)
	}
	return cmd
}

func runAutoscale(ctx context.Context, env *Env, c *client.Client, verb string, asJSON bool) error {
	var err error
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
	if asJSON {
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
