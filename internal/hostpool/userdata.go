package hostpool

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/setup"
)

// The machine's address is known only at boot: the user-data asks the
// provider's metadata service (DigitalOcean's, at 169.254.169.254) and
// writes it into agent.yaml's advertise through this shell variable.
const (
	advertiseVar = "SHOAL_ADVERTISE"
	// advertiseStandIn validates agent.yaml before the variable replaces
	// it (TEST-NET-1, RFC 5737).
	advertiseStandIn = "192.0.2.1"
	// Heredoc markers of the files the script writes; a test's fake
	// provider finds agent.yaml and the token between them.
	AgentYAMLMarker = "SHOAL_AGENT_YAML"
	TokenMarker     = "SHOAL_JOIN_TOKEN"
	UnitMarker      = "SHOAL_AGENT_UNIT"
)

// AdvertiseVar is the shell variable that holds the machine's address in
// the user-data's agent.yaml (written "${SHOAL_ADVERTISE}").
const AdvertiseVar = "${" + advertiseVar + "}"

// UserDataSpec is what a new machine's first boot needs.
type UserDataSpec struct {
	// Server is the fleet URL the agent joins (server.yaml fleet.url).
	Server string
	// Token is the one-time join token (secret).
	Token string
	// Name is the host's name (MachineName); Region and Zone its labels.
	Name, Region, Zone string
}

// UserData is the cloud-init user-data of a new machine: a shell script
// that writes agent.yaml (advertising the machine's private address, else
// its public one, from the metadata service), the join token and the
// systemd unit of `shoal setup` (the same layout), then starts the agent,
// which joins and says hello. The image must hold the shoal binary at
// setup.BinaryPath (a snapshot of a host made with `shoal setup`, the
// AMI's role). The script holds the token: never log it.
func UserData(s UserDataSpec) (string, error) {
	a := config.AgentFile{Server: config.URLList{s.Server}, JoinTokenFile: setup.TokenPath, Name: s.Name, Region: s.Region, Zone: s.Zone,
		Listen: config.DefaultAgentListen, Advertise: advertiseStandIn, DataDir: config.DefaultAgentDataDir}
	body, err := yaml.Marshal(a)
	if err != nil {
		return "", fmt.Errorf("user-data: %w", err)
	}
	if _, err := config.ParseAgent(setup.ConfigPath, body); err != nil {
		return "", fmt.Errorf("user-data: agent.yaml: %w", err)
	}
	cfg := strings.Replace(string(body), "advertise: "+advertiseStandIn, "advertise: "+AdvertiseVar, 1)
	if strings.ContainsAny(strings.ReplaceAll(cfg, AdvertiseVar, ""), "$`\\") {
		return "", fmt.Errorf("user-data: agent.yaml of %s holds a shell character ($, ` or \\)", s.Name)
	}
	if s.Token == "" || strings.ContainsAny(s.Token, "\n'") {
		return "", fmt.Errorf("user-data: the join token of %s is empty or not one line", s.Name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `#!/bin/sh
# shoal host %[1]s: writes the agent's files and starts it (cloud-init user-data).
set -eu
umask 077
md=http://169.254.169.254/metadata/v1/interfaces
%[2]s=$(curl -sf $md/private/0/ipv4/address || curl -sf $md/public/0/ipv4/address)
mkdir -p /etc/shoal
cat >%[3]s <<'%[4]s'
%[5]s
%[4]s
cat >%[6]s <<%[7]s
%[8]s%[7]s
chmod 0644 %[6]s
cat >%[9]s <<'%[10]s'
%[11]s%[10]s
chmod 0644 %[9]s
systemctl daemon-reload
systemctl enable --now %[12]s
`, s.Name, advertiseVar, setup.TokenPath, TokenMarker, s.Token, setup.ConfigPath, AgentYAMLMarker, cfg,
		setup.UnitPath, UnitMarker, setup.Unit, setup.Service)
	return b.String(), nil
}
