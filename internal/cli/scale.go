package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strconv"

	"github.com/shoal-dev/shoal/internal/client"
)

// runScale is `shoal scale N`.
func runScale(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	af := addUpFlags(fs)
	if err := fs.Parse(args); err != nil {
		return &UsageError{Err: err}
	}
	if fs.NArg() != 1 {
		return usagef("usage: shoal scale N")
	}
	n, err := strconv.Atoi(fs.Arg(0))
	if err != nil || n < 0 {
		return usagef("scale: %q is not a count", fs.Arg(0))
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	st, err := c.Scale(ctx, n)
	if client.IsStatus(err, http.StatusBadRequest) {
		return &UsageError{Err: apiErr(err)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "group %s: desired %d (min %d, max %d), %d in service now\n", st.App, st.Desired, st.Min, st.Max, st.InService)
	return nil
}
