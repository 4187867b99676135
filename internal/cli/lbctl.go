package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/config"
)

// lbSubcommands are the "shoal lb <cmd>" verbs that talk to a running
// balancer through its admin API.
func lbSubcommands() map[string]command {
	return map[string]command{
		"status":      {"show pools and targets with their state and reason", lbStatus},
		"add":         {"add a target: shoal lb add [-weight N] POOL HOST:PORT", lbAdd},
		"remove":      {"drain then remove a target: shoal lb remove [-wait] POOL HOST:PORT", lbRemove},
		"drain":       {"drain a target: shoal lb drain [-timeout 30s] [-wait] POOL HOST:PORT", lbDrain},
		"undrain":     {"put a drained target back: shoal lb undrain POOL HOST:PORT", lbUndrain},
		"weight":      {"set a target's weight: shoal lb weight POOL HOST:PORT N", lbWeight},
		"reload":      {"re-read the balancer's configuration file", lbReload},
		"maintenance": {"shoal lb maintenance on|off [-retry-after 30s]", lbMaintenance},
	}
}

// adminFlags are the flags every lb client verb takes.
type adminFlags struct {
	cfg, url, tokenFile string
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.cfg, "c", "", "read the admin address and token file from this lb.yaml (default ./lb.yaml if present)")
	fs.StringVar(&a.url, "admin", "", "admin API `URL`: http://host:port or unix:/path/admin.sock (default from lb.yaml, else http://127.0.0.1:9090)")
	fs.StringVar(&a.tokenFile, "token-file", "", "admin token `file` (default from lb.yaml, else .shoal/admin.token)")
}

// client resolves the flags into an admin API client: explicit flags win,
// then the lb.yaml, then the defaults.
func (a *adminFlags) client() (*client.Client, error) {
	url, tokenFile := a.url, a.tokenFile
	path := a.cfg
	if path == "" {
		if _, err := os.Stat("lb.yaml"); err == nil {
			path = "lb.yaml"
		}
	}
	if path != "" && (url == "" || tokenFile == "") {
		f, err := config.LoadLB(path)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		if url == "" && f.Admin.Addr != "" {
			url = adminURL(f.Admin.Addr)
		} else if url == "" {
			url = "unix:" + f.Admin.Socket
		}
		if tokenFile == "" {
			tokenFile = f.Admin.TokenFile
		}
	}
	if url == "" {
		url = adminURL(config.DefaultAdminAddr)
	}
	if tokenFile == "" {
		tokenFile = filepath.Join(".shoal", "admin.token")
	}
	b, err := os.ReadFile(tokenFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("no admin token at %s (use -token-file, or -c with the balancer's lb.yaml)", tokenFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read admin token: %w", err)
	}
	return client.New(adminURL(url), strings.TrimSpace(string(b))), nil
}

// parseInterleaved parses flags that may come before or after positional
// arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for range len(args) + 1 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, nil
}

// lbVerb parses the common and verb flags and wants exactly n positional
// arguments described by usage.
func lbVerb(env *Env, name, usage string, n int, args []string, extra func(*flag.FlagSet)) (*client.Client, []string, error) {
	fs := flag.NewFlagSet("lb "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var a adminFlags
	a.register(fs)
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: shoal lb %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, &UsageError{Err: err}
	}
	if len(pos) != n {
		return nil, nil, usagef("usage: shoal lb %s %s", name, usage)
	}
	c, err := a.client()
	if err != nil {
		return nil, nil, err
	}
	return c, pos, nil
}

// helpOK turns -h into success.
func helpOK(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func lbStatus(ctx context.Context, env *Env, args []string) error {
	c, _, err := lbVerb(env, "status", "[-admin URL] [-token-file F]", 0, args, nil)
	if err != nil {
		return helpOK(err)
	}
	st, err := c.LBStatus(ctx)
	if err != nil {
		return err
	}
	if st.Maintenance {
		fmt.Fprint(env.Stdout, "MAINTENANCE MODE: every proxied request gets 503 (shoal lb maintenance off)\n\n")
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tTARGET\tSTATE\tWEIGHT\tIN FLIGHT\tREQUESTS\tLATENCY\tSINCE\tREASON")
	now := time.Now()
	for _, p := range st.Pools {
		if len(p.Targets) == 0 {
			fmt.Fprintf(tw, "%s\t-\tno targets\t\t\t\t\t\t\n", p.Name)
		}
		for _, t := range p.Targets {
			state := t.State
			if p.FailOpen {
				state += " (fail-open)"
			}
			reason := t.Reason
			if t.CheckReason != "" && t.CheckReason != t.Reason {
				reason += "; check: " + t.CheckReason
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", p.Name, t.Addr, state,
				weightText(t), t.InFlight, t.Requests, latencyText(t.LatencyMS), ago(now, t.Since), reason)
		}
	}
	return tw.Flush()
}

func weightText(t client.Target) string {
	if t.EffectiveWeight > 0 && t.EffectiveWeight < float64(t.Weight) {
		return fmt.Sprintf("%d (%.1f)", t.Weight, t.EffectiveWeight)
	}
	return strconv.Itoa(t.Weight)
}

func latencyText(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	return (time.Duration(ms * float64(time.Millisecond))).Round(100 * time.Microsecond).String()
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func lbAdd(ctx context.Context, env *Env, args []string) error {
	var weight int
	c, pos, err := lbVerb(env, "add", "[-weight N] POOL HOST:PORT", 2, args, func(fs *flag.FlagSet) {
		fs.IntVar(&weight, "weight", 1, "relative weight, 1-256")
	})
	if err != nil {
		return helpOK(err)
	}
	if err := c.AddTarget(ctx, pos[0], pos[1], weight); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "added %s to pool %s\n", pos[1], pos[0])
	return nil
}

func lbRemove(ctx context.Context, env *Env, args []string) error {
	var wait bool
	c, pos, err := lbVerb(env, "remove", "[-wait] POOL HOST:PORT", 2, args, func(fs *flag.FlagSet) {
		fs.BoolVar(&wait, "wait", false, "return when the target has no request in flight")
	})
	if err != nil {
		return helpOK(err)
	}
	res, err := c.RemoveTarget(ctx, pos[0], pos[1], wait)
	if err != nil {
		return err
	}
	printDrain(env, "removing", res)
	return nil
}

func lbDrain(ctx context.Context, env *Env, args []string) error {
	var wait bool
	var timeout time.Duration
	c, pos, err := lbVerb(env, "drain", "[-timeout 30s] [-wait] POOL HOST:PORT", 2, args, func(fs *flag.FlagSet) {
		fs.BoolVar(&wait, "wait", false, "return when the target has no request in flight")
		fs.DurationVar(&timeout, "timeout", 0, "close what is still in flight after this long (default: the pool's drain_timeout)")
	})
	if err != nil {
		return helpOK(err)
	}
	res, err := c.DrainTarget(ctx, pos[0], pos[1], timeout, wait)
	if err != nil {
		return err
	}
	printDrain(env, "draining", res)
	return nil
}

func lbUndrain(ctx context.Context, env *Env, args []string) error {
	c, pos, err := lbVerb(env, "undrain", "POOL HOST:PORT", 2, args, nil)
	if err != nil {
		return helpOK(err)
	}
	if err := c.UndrainTarget(ctx, pos[0], pos[1]); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s is back in pool %s\n", pos[1], pos[0])
	return nil
}

func printDrain(env *Env, verb string, res *client.DrainResult) {
	if res.Idle {
		fmt.Fprintf(env.Stdout, "%s %s from pool %s: idle\n", verb, res.Addr, res.Pool)
		return
	}
	fmt.Fprintf(env.Stdout, "%s %s from pool %s: requests still in flight\n", verb, res.Addr, res.Pool)
}

func lbWeight(ctx context.Context, env *Env, args []string) error {
	c, pos, err := lbVerb(env, "weight", "POOL HOST:PORT WEIGHT", 3, args, nil)
	if err != nil {
		return helpOK(err)
	}
	w, err := strconv.Atoi(pos[2])
	if err != nil {
		return usagef("weight %q: want a whole number 1-256", pos[2])
	}
	if err := c.SetWeight(ctx, pos[0], pos[1], w); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "weight of %s in pool %s is %d\n", pos[1], pos[0], w)
	return nil
}

func lbReload(ctx context.Context, env *Env, args []string) error {
	c, _, err := lbVerb(env, "reload", "", 0, args, nil)
	if err != nil {
		return helpOK(err)
	}
	if err := c.Reload(ctx); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "reloaded")
	return nil
}

func lbMaintenance(ctx context.Context, env *Env, args []string) error {
	var retry time.Duration
	c, pos, err := lbVerb(env, "maintenance", "[-retry-after 30s] on|off", 1, args, func(fs *flag.FlagSet) {
		fs.DurationVar(&retry, "retry-after", 0, "Retry-After sent with the 503 answers")
	})
	if err != nil {
		return helpOK(err)
	}
	var on bool
	switch pos[0] {
	case "on":
		on = true
	case "off":
	default:
		return usagef("usage: shoal lb maintenance [-retry-after 30s] on|off")
	}
	if err := c.Maintenance(ctx, on, retry); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "maintenance %s\n", pos[0])
	return nil
}
