package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/setup"
)

// newSetupCmd is `shoal setup ssh://user@host[:port] ...`: install or
// upgrade the agent on an app host over SSH (package setup does the work).
func newSetupCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setup ssh://user@host[:port] --server URL {--advertise IP | --lb --lb-listen NAME=ADDR...} [--token T | --token-file F] [flags]",
		Short: "install or upgrade the shoal agent, or a balancer node, on a host over SSH, as a systemd service",
		Long: `Install the shoal agent on a Linux host with systemd, over SSH, or bring it up to date:
copy this shoal binary to /usr/local/bin/shoal, write /etc/shoal/agent.yaml, the join
token (/etc/shoal/join-token, only until the agent has joined) and the unit
/etc/systemd/system/shoal-agent.service, then enable and start shoal-agent. Only what
differs is written; the service restarts only when its binary, configuration, token or
unit changed, and its instances keep running through a restart. One line per item says
what changed.

The host's key must be in ~/.ssh/known_hosts (or --known-hosts): an unknown or changed
key is refused before anything is sent. Keys come from the SSH agent ($SSH_AUTH_SOCK)
and -i. A user other than root needs sudo without a password.

With --lb, install a balancer node instead: shoal lb following the server (its routes,
pools, targets and certificates come from it). Setup writes /etc/shoal/lb.yaml (the
--lb-listen listeners, a server section with --server, the node's name and data dir),
the join token /etc/shoal/lb-join-token (from shoal join-token --role lb; only until
the node has joined) and the unit
/etc/systemd/system/shoal-lb.service. A new binary or lb.yaml is taken with
systemctl reload shoal-lb: the new process takes over the listening sockets from the old
one, which drains, so no request fails. A changed unit restarts it.

agent.yaml (lb.yaml) is rewritten from the flags on every run: give the same flags each
time.`,
		Example: `  shoal setup ssh://root@10.0.0.7 --server https://10.0.0.1:7440 --advertise 10.0.0.7 \
      --zone eu-1 --token-file web-1.token
  shoal setup ssh://root@10.0.0.20 --lb --server https://10.0.0.1:7443 \
      --lb-listen http=:80 --lb-listen https=:443,acme --token-file lb-1.token`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("setup takes one host, ssh://user@host[:port] (usage: %s)", c.UseLine())
			}
			return nil
		},
	}
	f := cmd.Flags()
	server := f.String("server", "", "`URL` of the server's agent listener, https://host:port (required)")
	advertise := f.String("advertise", "", "the host's `IP` address that the server and the balancer reach it at (required)")
	token := f.String("token", "", "one-time join `token` (shoal join-token prints one); needed until the agent has joined; others on this machine see it in ps, so prefer --token-file")
	tokenFile := f.String("token-file", "", "`file` holding the join token, instead of --token")
	name := f.String("name", "", "the host's `name` in the fleet (default: its host name, lowercased)")
	zone := f.String("zone", "", "the host's `zone`; the server spreads instances over zones")
	region := f.String("region", "", "the host's `region`; the server spreads instances over regions, then their zones")
	listen := f.String("listen", "", "`address` of the agent's API (default "+config.DefaultAgentListen+")")
	dataDir := f.String("data-dir", "", "the agent's data `dir` (default "+config.DefaultAgentDataDir+")")
	cpu := f.Float64("cpu", 0, "`cores` the server may place on the host (default: all it has)")
	memory := f.String("memory", "", "`bytes` the server may place on the host, such as 4GiB (default: all it has)")
	binary := f.String("binary", "", "the shoal `file` to install, a Linux build for the host's CPU (default: this shoal)")
	key := f.StringP("identity", "i", "", "private key `file` to log in with (default: the SSH agent's keys)")
	knownHosts := f.String("known-hosts", "", "known_hosts `file` that must hold the host's key (default ~/.ssh/known_hosts)")
	lbNode := f.Bool("lb", false, "install a balancer node (shoal lb following --server) instead of the agent")
	lbListen := f.StringArray("lb-listen", nil, "with --lb: a listener, `name=host:port`, with ,acme for HTTPS with the server's ACME certificates; repeat for more")

	cmd.RunE = func(c *cobra.Command, args []string) error {
		target, err := setup.ParseTarget(args[0])
		if err != nil {
			return &UsageError{Err: err}
		}
		var missing []string
		if *server == "" {
			missing = append(missing, "--server")
		}
		switch {
		case *lbNode && len(*lbListen) == 0:
			missing = append(missing, "--lb-listen")
		case !*lbNode && *advertise == "":
			missing = append(missing, "--advertise")
		}
		if len(missing) > 0 {
			return usagef("setup needs %s (see shoal setup --help)", strings.Join(missing, " and "))
		}
		if *lbNode {
			for _, agentOnly := range []string{"advertise", "zone", "region", "listen", "cpu", "memory"} {
				if f.Changed(agentOnly) {
					return usagef("--%s is the agent's: a balancer node (--lb) has no such setting", agentOnly)
				}
			}
		} else if len(*lbListen) > 0 {
			return usagef("--lb-listen needs --lb")
		}
		o := setup.Options{
			Agent: config.AgentFile{Server: config.URLList{*server}, Advertise: *advertise, Name: *name, Zone: *zone, Region: *region,
				Listen: *listen, DataDir: *dataDir, CPU: *cpu},
			Token:      *token,
			KeyFile:    *key,
			KnownHosts: *knownHosts,
			Binary:     *binary,
		}
		if *memory != "" {
			if err := o.Agent.Memory.UnmarshalText([]byte(*memory)); err != nil {
				return usagef("--memory: %v", err)
			}
		}
		switch {
		case *token != "" && *tokenFile != "":
			return usagef("give the join token once: --token or --token-file, not both")
		case *tokenFile != "":
			data, err := os.ReadFile(*tokenFile)
			if err != nil {
				return usagef("--token-file: %v", err)
			}
			if o.Token = strings.TrimSpace(string(data)); o.Token == "" {
				return usagef("--token-file: %s is empty", *tokenFile)
			}
		}
		what := "the shoal agent"
		if *lbNode {
			what = "a shoal balancer node"
			n := &setup.LBNode{Server: *server, Name: *name, DataDir: *dataDir}
			for _, arg := range *lbListen {
				l, err := parseLBListen(arg)
				if err != nil {
					return &UsageError{Err: err}
				}
				n.Listeners = append(n.Listeners, l)
			}
			if err := setup.ValidateLB(*n); err != nil {
				return &UsageError{Err: flagProblems(err)}
			}
			o.LB = n
		} else if err := setup.ValidateAgent(o.Agent); err != nil {
			return &UsageError{Err: flagProblems(err)}
		}
		fmt.Fprintf(env.Stdout, "setting up %s on %s\n", what, target)
		rep, err := setup.Run(c.Context(), target, o, env.Stdout)
		if err != nil && rep.Changed() {
			return fmt.Errorf("%w (the lines above say what was changed before this)", err)
		} else if err != nil {
			return err
		}
		if !rep.Changed() {
			fmt.Fprintf(env.Stdout, "nothing to change: %s is up to date\n", strings.TrimPrefix(what, "a "))
		}
		return nil
	}
	return cmd
}

// parseLBListen parses --lb-listen's name=host:port[,acme].
func parseLBListen(arg string) (setup.LBListener, error) {
	name, addr, ok := strings.Cut(arg, "=")
	if !ok || name == "" || addr == "" {
		return setup.LBListener{}, fmt.Errorf("--lb-listen %q: want name=host:port[,acme], such as http=:80 or https=:443,acme", arg)
	}
	l := setup.LBListener{Name: name, Listen: addr}
	if a, opt, ok := strings.Cut(addr, ","); ok {
		if opt != "acme" {
			return setup.LBListener{}, fmt.Errorf("--lb-listen %q: unknown option %q after the address; the one option is acme", arg, opt)
		}
		l.Listen, l.ACME = a, true
	}
	return l, nil
}

// flagProblems restates the problems of the agent.yaml (lb.yaml) built
// from the flags in terms of the flags (--data-dir for data_dir,
// --server for lb.yaml's server.url).
func flagProblems(err error) error {
	var ps config.Problems
	if !errors.As(err, &ps) {
		return err
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		flag := p.Path
		switch {
		case flag == "server.url":
			flag = "server"
		case strings.HasPrefix(flag, "server."):
			flag = strings.TrimPrefix(flag, "server.")
		case strings.HasPrefix(flag, "listeners"):
			// listeners[1].name: the second --lb-listen's name.
			var n int
			var field string
			if _, err := fmt.Sscanf(strings.ReplaceAll(flag, "].", "] "), "listeners[%d] %s", &n, &field); err == nil {
				lines[i] = fmt.Sprintf("--lb-listen #%d (%s): %s", n+1, field, p.Msg)
				continue
			}
			flag = "lb-listen"
		}
		lines[i] = "--" + strings.ReplaceAll(flag, "_", "-") + ": " + p.Msg
	}
	return errors.New(strings.Join(lines, "\n"))
}
