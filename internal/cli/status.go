package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/config"
)

// upFlags are the flags every client verb of `shoal up` takes to find
// the admin API.
type upFlags struct {
	file      string
	admin     string
	tokenFile string
	app       string
	caPin     string
}

func addUpFlags(fs *pflag.FlagSet) *upFlags {
	f := &upFlags{}
	fs.StringVarP(&f.file, "config", "c", config.AppFileName, "the app's configuration `file`, to find the admin API and its token")
	fs.StringVar(&f.admin, "admin", "", "admin API `URL` (default: $"+envAdminURL+", else from the configuration)")
	fs.StringVar(&f.tokenFile, "token-file", "", "admin token `file` (default: $"+envToken+" holds the token, else <data_dir>/admin.token)")
	fs.StringVar(&f.app, "app", "", "the `app` of a shoal server (default: the app of the configuration, when there is one)")
	fs.StringVar(&f.caPin, "ca-pin", "", "the fleet CA's `pin` an https admin URL must present (default: $"+envCAPin+"; shoal server prints it)")
	return f
}

// The environment variables that point the client verbs at an admin API
// without a configuration file or token file: for CI.
const (
	envAdminURL = "SHOAL_ADMIN_URL" // the admin API's URL
	envToken    = "SHOAL_TOKEN"     // the admin token itself
	envCAPin    = "SHOAL_CA_PIN"    // the fleet CA's pin, for an https admin URL
)

// client returns an admin API client. The URL is, in order: --admin,
// $SHOAL_ADMIN_URL, the admin.url file a running `shoal up` writes into
// its data directory, or admin.listen. The token is, in order: the file of
// --token-file, $SHOAL_TOKEN, or the file in the data directory. When the
// configuration is read, the client refuses an admin API of another app,
// and says where to run `shoal up` when nothing answers. The app (sent
// with every request, for `shoal server`) is --app, else the
// configuration's when the file is there. An https URL is checked against
// --ca-pin or $SHOAL_CA_PIN when set.
func (f *upFlags) client() (*client.Client, error) {
	url, tokenFile := f.admin, f.tokenFile
	if url == "" {
		url = os.Getenv(envAdminURL)
	}
	envTok := ""
	if tokenFile == "" {
		envTok = strings.TrimSpace(os.Getenv(envToken))
	}
	var app, hint string
	if url == "" || (tokenFile == "" && envTok == "") {
		cfg, err := loadAppConfig(f.file)
		if err != nil {
			if url == "" {
				return nil, &UsageError{Err: fmt.Errorf("%w (or pass --admin and --token-file, or set %s and %s)", err, envAdminURL, envToken)}
			}
			return nil, err
		}
		app = cfg.Name
		if abs, err := filepath.Abs(f.file); err == nil {
			hint = fmt.Sprintf("is `shoal up` running in %s?", filepath.Dir(abs))
		}
		if tokenFile == "" && envTok == "" {
			tokenFile = filepath.Join(cfg.DataDir, adminapi.TokenFile)
		}
		if url == "" {
			if b, err := os.ReadFile(filepath.Join(cfg.DataDir, adminURLFile)); err == nil {
				url = strings.TrimSpace(string(b))
			} else {
				url = "http://" + cfg.Admin.Listen
			}
		}
	}
	if app == "" && f.app == "" {
		// The URL and token came from flags or the environment: the
		// folder's shoal.yaml, when there is one, still names the app.
		if _, err := os.Stat(f.file); err == nil {
			cfg, err := loadAppConfig(f.file)
			if err != nil {
				return nil, err
			}
			app = cfg.Name
		}
	}
	if f.app != "" {
		app = f.app
	}
	tok := envTok
	if tok == "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read admin token (has shoal up run here?): %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	pin := f.caPin
	if pin == "" {
		pin = strings.TrimSpace(os.Getenv(envCAPin))
	}
	c, err := client.NewWithOptions(url, tok, client.Options{CAPin: pin})
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	c.App, c.Hint = app, hint
	return c, nil
}

// outputFlag is -o/--output of the read verbs: "text" for people, "json"
// for scripts (the admin API's JSON, the stable form).
type outputFlag struct {
	format string
	json   bool // --json, the flag before -o json
}

func addOutputFlag(fs *pflag.FlagSet) *outputFlag {
	o := &outputFlag{}
	fs.StringVarP(&o.format, "output", "o", "text", "output `format`: text or json")
	fs.BoolVar(&o.json, "json", false, "print JSON (same as -o json)")
	return o
}

// asJSON reports whether JSON was asked for; another format is a usage
// error.
func (o *outputFlag) asJSON() (bool, error) {
	switch o.format {
	case "text":
		return o.json, nil
	case "json":
		return true, nil
	}
	return false, usagef("-o %q: want text or json", o.format)
}

// readCmd is a verb that takes no argument and only reads from the admin
// API: run gets its client and whether JSON was asked for.
func readCmd(use, short string, run func(ctx context.Context, c *client.Client, asJSON bool) error) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: noArgs}
	af := addUpFlags(cmd.Flags())
	out := addOutputFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		asJSON, err := out.asJSON()
		if err != nil {
			return err
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		return run(cmd.Context(), c, asJSON)
	}
	return cmd
}

func newStatusCmd(env *Env) *cobra.Command {
	return readCmd("status", "show the group, its release and its instances", func(ctx context.Context, c *client.Client, asJSON bool) error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(env.Stdout, st)
		}
		printStatus(env.Stdout, st, time.Now())
		// Auto scaling: each policy's value against its target (autoscale.go).
		if as, err := c.Autoscale(ctx); err == nil && as.Enabled {
			printAutoscale(env.Stdout, as)
		}
		return nil
	})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printStatus writes st for people: the group, its crash and backoff,
// the instances (with a host column when any runs on a host other than
// shoal up's "local"), and the fleet's hosts when st carries them, their
// heartbeats aged at now.
func printStatus(w io.Writer, st client.Status, now time.Time) {
	fmt.Fprintf(w, "group %s: release v%d, %d/%d in service (min %d, max %d), host %s\n",
		st.App, st.Release, st.InService, st.Desired, st.Min, st.Max, st.Host)
	if st.Maintenance {
		fmt.Fprintln(w, "maintenance: on, the balancer answers every request with 503 (shoal maintenance off ends it)")
	}
	if cr := st.Crash; cr != nil {
		what := "crashed"
		if cr.InARow > 1 {
			what = fmt.Sprintf("crash loop (%d in a row)", cr.InARow)
		}
		fmt.Fprintf(w, "%s: %s after %s", what, cr.Exit, crashUptime(cr.UptimeSeconds))
		if cr.Message != "" {
			fmt.Fprintf(w, ": %s", cr.Message)
		}
		fmt.Fprintf(w, " (instance %s)\n", cr.Instance)
	}
	if st.Events != "" {
		fmt.Fprintf(w, "store: %s\n", st.Events)
	}
	if st.Backoff != "" {
		fmt.Fprintf(w, "backoff: %s\n", st.Backoff)
	}
	if cr := st.Crash; cr != nil && len(cr.Logs) > 0 {
		// A few lines from the one that says why (a stack trace or a
		// runtime's banner may follow it), else the last few.
		const show = 5
		from := max(len(cr.Logs)-show, 0)
		for i, l := range cr.Logs {
			if l == cr.Message {
				from = i
			}
		}
		fmt.Fprintf(w, "log of %s (shoal logs %s shows it all):\n", cr.Instance, cr.Instance)
		for _, l := range cr.Logs[from:min(from+show, len(cr.Logs))] {
			fmt.Fprintf(w, "  | %s\n", l)
		}
	}
	printInstances(w, st.Instances)
	if len(st.Timing) > 0 {
		fmt.Fprintln(w)
		printTiming(w, st.Timing)
	}
	if st.Hosts != nil {
		fmt.Fprintln(w)
		printHosts(w, st.Hosts, now)
	}
}

// printInstances writes the instances table; the HOST column (host and
// zone) appears when any instance runs on a host other than "local".
func printInstances(w io.Writer, ins []client.Instance) {
	if len(ins) == 0 {
		fmt.Fprintln(w, "no instances")
		return
	}
	hosts := slices.ContainsFunc(ins, func(in client.Instance) bool { return in.Host != "" && in.Host != "local" })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "INSTANCE\tRELEASE\tSTATE\tHEALTH\tADDRESS\t"
	if hosts {
		head += "HOST\t"
	}
	fmt.Fprintln(tw, head+"UPTIME\tREQ/S\tREASON")
	for _, in := range ins {
		fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\t", in.ID, in.Release, in.State, in.Health, orDash(in.Addr))
		if hosts {
			host := orDash(in.Host)
			if in.Zone != "" {
				host += " (" + in.Zone + ")"
			}
			fmt.Fprintf(tw, "%s\t", host)
		}
		reason := in.Reason
		if in.Moving != "" {
			reason = "moving " + in.Moving // its replacement's line says how that goes
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\n", uptime(in.UptimeSeconds), in.RequestsPerSecond, reason)
	}
	tw.Flush()
}

func uptime(sec float64) string {
	if sec <= 0 {
		return "-"
	}
	d := time.Duration(sec * float64(time.Second))
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// crashUptime is a crashed process's lifetime: milliseconds or tenths of
// a second for a crash on boot.
func crashUptime(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return uptime(sec)
}

// apiErr shortens admin API errors for people.
func apiErr(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return errors.New(ae.Message)
	}
	return err
}
