package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/config"
)

// lbClientVerbs are the "shoal lb <cmd>" verbs that talk to a running
// balancer through its admin API.
var lbClientVerbs = []struct {
	name string
	new  func(env *Env) *cobra.Command
}{
	{"status", newLBStatusCmd},
	{"add", newLBAddCmd},
	{"remove", newLBRemoveCmd},
	{"drain", newLBDrainCmd},
	{"undrain", newLBUndrainCmd},
	{"weight", newLBWeightCmd},
	{"reload", newLBReloadCmd},
	{"maintenance", newLBMaintenanceCmd},
	{"check", newLBCheckCmd},
}

// lbClientCmds returns the commands of lbClientVerbs.
func lbClientCmds(env *Env) []*cobra.Command {
	var cmds []*cobra.Command
	for _, v := range lbClientVerbs {
		cmds = append(cmds, v.new(env))
	}
	return cmds
}

// lbSubcommands maps each lb client verb to a run function that goes
// through the command tree, for a caller that holds raw arguments
// (runLB).
func lbSubcommands() map[string]command {
	m := make(map[string]command, len(lbClientVerbs))
	for _, v := range lbClientVerbs {
		m[v.name] = command{
			summary: v.new(nil).Short,
			run: func(ctx context.Context, env *Env, args []string) error {
				_, err := execute(ctx, env, append([]string{"lb", v.name}, args...))
				return err
			},
		}
	}
	return m
}

// adminFlags are the flags every lb client verb takes.
type adminFlags struct {
	cfg, url, tokenFile string
}

func addAdminFlags(fs *pflag.FlagSet) *adminFlags {
	a := &adminFlags{}
	fs.StringVarP(&a.cfg, "config", "c", "", "read the admin address and token file from this lb.yaml (default ./lb.yaml if present)")
	fs.StringVar(&a.url, "admin", "", "admin API `URL`: http://host:port or unix:/path/admin.sock (default: $"+envAdminURL+", else from lb.yaml, else http://127.0.0.1:9090)")
	fs.StringVar(&a.tokenFile, "token-file", "", "admin token `file` (default: $"+envToken+" holds the token, else from lb.yaml, else .shoal/admin.token)")
	return a
}

// client resolves the flags into an admin API client: explicit flags win,
// then $SHOAL_ADMIN_URL and $SHOAL_TOKEN, then the lb.yaml, then the
// defaults.
func (a *adminFlags) client() (*client.Client, error) {
	url, tokenFile := a.url, a.tokenFile
	if url == "" {
		url = os.Getenv(envAdminURL)
	}
	tok := ""
	if tokenFile == "" {
		tok = strings.TrimSpace(os.Getenv(envToken))
	}
	path := a.cfg
	if path == "" {
		if _, err := os.Stat("lb.yaml"); err == nil {
			path = "lb.yaml"
		}
	}
	if path != "" && (url == "" || (tokenFile == "" && tok == "")) {
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
	if tok != "" {
		return client.New(adminURL(url), tok), nil
	}
	if tokenFile == "" {
		tokenFile = filepath.Join(".shoal", "admin.token")
	}
	b, err := os.ReadFile(tokenFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("no admin token at %s (use --token-file, -c with the balancer's lb.yaml, or set %s)", tokenFile, envToken)
	}
	if err != nil {
		return nil, fmt.Errorf("read admin token: %w", err)
	}
	return client.New(adminURL(url), strings.TrimSpace(string(b))), nil
}

// lbVerb is a "shoal lb" client verb taking n positional arguments (use
// names them): run gets the admin API client and the arguments. extra
// adds the verb's own flags.
func lbVerb(use, short string, n int, extra func(*pflag.FlagSet), run func(ctx context.Context, c *client.Client, args []string) error) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: exactArgs(n)}
	a := addAdminFlags(cmd.Flags())
	if extra != nil {
		extra(cmd.Flags())
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		return run(cmd.Context(), c, args)
	}
	return cmd
}

func newLBStatusCmd(env *Env) *cobra.Command {
	var out *outputFlag
	return lbVerb("status", "show pools and targets with their state and reason", 0,
		func(fs *pflag.FlagSet) { out = addOutputFlag(fs) },
		func(ctx context.Context, c *client.Client, _ []string) error {
			asJSON, err := out.asJSON()
			if err != nil {
				return err
			}
			return lbStatus(ctx, env, c, asJSON)
		})
}

func lbStatus(ctx context.Context, env *Env, c *client.Client, asJSON bool) error {
	st, err := c.LBStatus(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(env.Stdout, st)
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

// newLBCheckCmd is `shoal lb check`: the floating address's health check
// of the local balancer (client.CheckBalancer, which the keepalived guard
// of lb.yaml's vip section runs every second), for operators and scripts.
// It exits 0 when the balancer answers its admin API's status within
// client.BalancerCheckTimeout, non-zero otherwise.
func newLBCheckCmd(env *Env) *cobra.Command {
	return lbVerb("check", "exit 0 when the balancer answers on its admin API (the floating address's health check)", 0, nil,
		func(ctx context.Context, c *client.Client, _ []string) error {
			return c.CheckBalancer(ctx)
		})
}

func newLBAddCmd(env *Env) *cobra.Command {
	var weight int
	return lbVerb("add [--weight N] POOL HOST:PORT", "add a target to a pool", 2,
		func(fs *pflag.FlagSet) { fs.IntVar(&weight, "weight", 1, "relative weight, 1-256") },
		func(ctx context.Context, c *client.Client, pos []string) error {
			if err := c.AddTarget(ctx, pos[0], pos[1], weight); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "added %s to pool %s\n", pos[1], pos[0])
			return nil
		})
}

func newLBRemoveCmd(env *Env) *cobra.Command {
	var wait bool
	return lbVerb("remove [--wait] POOL HOST:PORT", "drain then remove a target", 2,
		func(fs *pflag.FlagSet) {
			fs.BoolVar(&wait, "wait", false, "return when the target has no request in flight")
		},
		func(ctx context.Context, c *client.Client, pos []string) error {
			res, err := c.RemoveTarget(ctx, pos[0], pos[1], wait)
			if err != nil {
				return err
			}
			printDrain(env, "removing", res)
			return nil
		})
}

func newLBDrainCmd(env *Env) *cobra.Command {
	var wait bool
	var timeout time.Duration
	return lbVerb("drain [--timeout 30s] [--wait] POOL HOST:PORT", "drain a target: no new requests", 2,
		func(fs *pflag.FlagSet) {
			fs.BoolVar(&wait, "wait", false, "return when the target has no request in flight")
			fs.DurationVar(&timeout, "timeout", 0, "close what is still in flight after this long (default: the pool's drain_timeout)")
		},
		func(ctx context.Context, c *client.Client, pos []string) error {
			res, err := c.DrainTarget(ctx, pos[0], pos[1], timeout, wait)
			if err != nil {
				return err
			}
			printDrain(env, "draining", res)
			return nil
		})
}

func newLBUndrainCmd(env *Env) *cobra.Command {
	return lbVerb("undrain POOL HOST:PORT", "put a drained target back", 2, nil,
		func(ctx context.Context, c *client.Client, pos []string) error {
			if err := c.UndrainTarget(ctx, pos[0], pos[1]); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "%s is back in pool %s\n", pos[1], pos[0])
			return nil
		})
}

func printDrain(env *Env, verb string, res *client.DrainResult) {
	if res.Idle {
		fmt.Fprintf(env.Stdout, "%s %s from pool %s: idle\n", verb, res.Addr, res.Pool)
		return
	}
	fmt.Fprintf(env.Stdout, "%s %s from pool %s: requests still in flight\n", verb, res.Addr, res.Pool)
}

func newLBWeightCmd(env *Env) *cobra.Command {
	return lbVerb("weight POOL HOST:PORT WEIGHT", "set a target's weight", 3, nil,
		func(ctx context.Context, c *client.Client, pos []string) error {
			w, err := strconv.Atoi(pos[2])
			if err != nil {
				return usagef("weight %q: want a whole number 1-256", pos[2])
			}
			if err := c.SetWeight(ctx, pos[0], pos[1], w); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "weight of %s in pool %s is %d\n", pos[1], pos[0], w)
			return nil
		})
}

func newLBReloadCmd(env *Env) *cobra.Command {
	return lbVerb("reload", "re-read the balancer's configuration file", 0, nil,
		func(ctx context.Context, c *client.Client, _ []string) error {
			if err := c.Reload(ctx); err != nil {
				return err
			}
			fmt.Fprintln(env.Stdout, "reloaded")
			return nil
		})
}

func newLBMaintenanceCmd(env *Env) *cobra.Command {
	var retry time.Duration
	cmd := lbVerb("maintenance [--retry-after 30s] on|off", "answer every proxied request with 503, or serve again", 1,
		func(fs *pflag.FlagSet) {
			fs.DurationVar(&retry, "retry-after", 0, "Retry-After sent with the 503 answers")
		},
		func(ctx context.Context, c *client.Client, pos []string) error {
			var on bool
			switch pos[0] {
			case "on":
				on = true
			case "off":
			default:
				return usagef("usage: shoal lb maintenance [--retry-after 30s] on|off")
			}
			if err := c.Maintenance(ctx, on, retry); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "maintenance %s\n", pos[0])
			return nil
		})
	cmd.ValidArgs = []string{"on", "off"}
	return cmd
}
