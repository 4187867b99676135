package setup

import (
	"slices"
	"strings"
)

// role is what Run installs: the agent, or a balancer node (Options.LB).
// Both share BinaryPath and the way files are written; they differ in
// their files, their unit and how the service takes a change.
type role struct {
	what                    string // "the agent", "the balancer node"
	command                 string // what the unit runs, as a person would type it
	configPath, tokenPath   string
	unitPath, unit, service string
	other                   string // the other role's service, which runs the same binary
	dataDir                 string // where node.crt is found once joined
	name                    string // the configured name; "" for the host's
	render                  func(name string) ([]byte, error)
	// reload: a changed binary, configuration or token is taken with
	// `systemctl reload` (the balancer's listener handoff, no gap) rather
	// than a restart. A changed unit always restarts.
	reload bool
}

// roleOf is the role o asks for, its configuration checked.
func roleOf(o Options) (role, error) {
	if o.LB != nil {
		n := *o.LB
		return role{
			what: "the balancer node", command: "shoal lb -c " + LBConfigPath, configPath: LBConfigPath, tokenPath: LBTokenPath,
			unitPath: LBUnitPath, unit: LBUnit, service: LBService, other: Service, dataDir: lbDataDir(n), name: n.Name,
			render: func(name string) ([]byte, error) { n.Name = name; return lbYAML(n) },
			reload: true,
		}, ValidateLB(n)
	}
	a := o.Agent
	return role{
		what: "the agent", command: "shoal agent -c " + ConfigPath, configPath: ConfigPath, tokenPath: TokenPath,
		unitPath: UnitPath, unit: Unit, service: Service, other: LBService, dataDir: dataDir(a), name: a.Name,
		render: func(name string) ([]byte, error) { a.Name = name; return agentYAML(a) },
	}, ValidateAgent(a)
}

// serviceStep is the systemctl verbs that bring r's service up to date and
// the report's words for them; no verbs when nothing is to be done.
// changed lists what changed (binary, config, join token, unit).
func (r role) serviceStep(enabled, active bool, changed []string) ([]string, string) {
	why := strings.Join(changed, ", ") + " changed"
	take, took := "restart", "restarted ("+why+"; instances keep running)"
	if r.reload {
		took = "restarted (" + why + ")"
		if !slices.Contains(changed, "unit") {
			take, took = "reload", "reloaded ("+why+"; the new process took over the listeners)"
		}
	}
	switch {
	case !enabled && !active:
		return []string{"enable --now"}, "enabled and started"
	case !enabled && len(changed) > 0:
		return []string{"enable", take}, "enabled and " + took
	case !enabled:
		return []string{"enable"}, "enabled (was running)"
	case len(changed) > 0 && (active || take == "restart"):
		return []string{take}, took
	case !active:
		// A reload needs a running process; a start runs what is new.
		return []string{"start"}, "started (was not running)"
	}
	return nil, ""
}
