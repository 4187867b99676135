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
		Use:   "setup ssh://user@host[:port] --server URL --advertise IP [--token T | --token-file F] [flags]",
		Short: "install or upgrade the shoal agent on a host over SSH, as a systemd service",
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

agent.yaml is rewritten from the flags on every run: give the same flags each time.`,
		Example: `  shoal setup ssh://root@10.0.0.7 --server https://10.0.0.1:7440 --advertise 10.0.0.7 \
      --zone eu-1 --token-file web-1.token`,
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

	cmd.RunE = func(c *cobra.Command, args []string) error {
		target, err := setup.ParseTarget(args[0])
		if err != nil {
			return &UsageError{Err: err}
		}
		var missing []string
		if *server == "" {
			missing = append(missing, "--server")
		}
		if *advertise == "" {
			missing = append(missing, "--advertise")
		}
		if len(missing) > 0 {
			return usagef("setup needs %s (see shoal setup --help)", strings.Join(missing, " and "))
		}
		o := setup.Options{
			Agent: config.AgentFile{Server: *server, Advertise: *advertise, Name: *name, Zone: *zone, Region: *region,
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
		if err := setup.ValidateAgent(o.Agent); err != nil {
			return &UsageError{Err: flagProblems(err)}
		}
		fmt.Fprintf(env.Stdout, "setting up the shoal agent on %s\n", target)
		rep, err := setup.Run(c.Context(), target, o, env.Stdout)
		if err != nil && rep.Changed() {
			return fmt.Errorf("%w (the lines above say what was changed before this)", err)
		} else if err != nil {
			return err
		}
		if !rep.Changed() {
			fmt.Fprintln(env.Stdout, "nothing to change: the agent is up to date")
		}
		return nil
	}
	return cmd
}

// flagProblems restates the problems of the agent.yaml built from the
// flags in terms of the flags (--data-dir for data_dir).
func flagProblems(err error) error {
	var ps config.Problems
	if !errors.As(err, &ps) {
		return err
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = "--" + strings.ReplaceAll(p.Path, "_", "-") + ": " + p.Msg
	}
	return errors.New(strings.Join(lines, "\n"))
}
