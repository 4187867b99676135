package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// labPartitionTable is the nftables table that Partition adds in a host's
// namespace.
const labPartitionTable = "shoal_lab_partition"

// Partition drops every packet between host and the addresses from
// (other hosts' IPs), both ways, with an nftables table in host's own
// namespace: a partition between some hosts while the host still reaches
// the rest. Connections hang rather than being reset, as in a real
// partition. Heal removes the table. It needs nft (the nftables package).
func (l *Lab) Partition(ctx context.Context, host string, from ...string) error {
	if len(from) == 0 {
		return fmt.Errorf("lab: partition of %s from no address", host)
	}
	set := strings.Join(from, ", ")
	rules := fmt.Sprintf(`table inet %[1]s {
	chain in { type filter hook input priority 0; policy accept; ip saddr { %[2]s } drop; }
	chain out { type filter hook output priority 0; policy accept; ip daddr { %[2]s } drop; }
}
`, labPartitionTable, set)
	return l.nft(ctx, host, rules)
}

// Heal removes what Partition added on host; a host with no partition is
// an error.
func (l *Lab) Heal(ctx context.Context, host string) error {
	return l.nft(ctx, host, "delete table inet "+labPartitionTable+"\n")
}

// nft runs the nftables script on host.
func (l *Lab) nft(ctx context.Context, host, script string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("lab: nftables: %w (apt-get install nftables)", err)
	}
	cmd := l.CommandContext(ctx, host, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: nft on %s: %v: %s", host, err, out)
	}
	return nil
}
