// Package setup installs the shoal agent, or a balancer node, on a Linux
// host over SSH, the work of `shoal setup ssh://user@host`. It owns the
// agent's installed layout:
//
//	/usr/local/bin/shoal                      the binary (0755)
//	/etc/shoal/agent.yaml                     the agent's configuration (0644), a config.AgentFile
//	/etc/shoal/join-token                     the one-time join token (0600), until the agent has joined
//	/etc/systemd/system/shoal-agent.service   the systemd unit (0644, Unit)
//
// and, with Options.LB, a balancer node's (`shoal lb` following a server):
//
//	/usr/local/bin/shoal                      the binary, shared with the agent
//	/etc/shoal/lb.yaml                        listeners and a server section (0644)
//	/etc/shoal/lb-join-token                  the one-time join token (0600), until the node has joined
//	/etc/systemd/system/shoal-lb.service      the systemd unit (0644, LBUnit)
//
// Run is idempotent: it first asks the host what it holds (sha256 of each
// file, whether systemd runs, whether the agent has joined, whether the
// service is enabled and active), changes only what differs, and reports
// one line per item. Every file is written to a temporary file in its own
// directory, checked against its sha256, then renamed over the old one, so
// a cut connection leaves the old file or the new one, never half of one.
//
// The service restarts only when something it runs on changed; a
// balancer node's takes a new binary or lb.yaml with `systemctl reload`
// instead (SIGUSR2: the new process takes over the listening sockets and
// the old one drains), and restarts only for a changed unit. The agent's
// unit uses KillMode=process: its instances run under per-instance shims
// in the agent's cgroup, and a restart must stop the agent alone, not them.
// The agent and a balancer node on one host run the same binary: a new one
// installed for either is taken by the other too, when it runs.
//
// The host's key is checked against a known_hosts file before anything is
// sent; an unknown or changed key is refused (KeyError). Commands run as
// root, or through `sudo -n` when the user is not root.
package setup
