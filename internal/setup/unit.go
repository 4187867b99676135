package setup

// Where Run installs the agent on a host.
const (
	BinaryPath = "/usr/local/bin/shoal"
	ConfigPath = "/etc/shoal/agent.yaml"
	TokenPath  = "/etc/shoal/join-token"
	UnitPath   = "/etc/systemd/system/shoal-agent.service"
	// Service is the unit's name for systemctl.
	Service = "shoal-agent"
)

// Unit is the systemd unit that runs the agent.
//
// KillMode=process: systemd stops and restarts the agent's main process
// only. The agent's instances run under per-instance shims in the agent's
// cgroup; with the default (control-group) every restart of the agent,
// and every upgrade, would kill them. A restarted agent adopts its running
// instances. containerd's unit does the same for its shims.
//
// Restart=always with a short delay: the agent is the host's only link to
// the server; it comes back after a crash, an OOM kill or a failed join
// (say the server was unreachable), without an operator.
//
// TasksMax and LimitNOFILE: the instances are counted in the agent's
// cgroup and inherit its limits, so the unit's defaults (a few thousand
// tasks, 1024 files) would cap the apps, not the agent.
const Unit = `# Written by shoal setup; rerunning shoal setup rewrites it.
[Unit]
Description=Shoal agent: runs this host's app instances for a shoal server
Documentation=https://github.com/shoal-dev/shoal/blob/main/docs/configuration.md
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart=` + BinaryPath + ` agent -c ` + ConfigPath + `
Restart=always
RestartSec=2
KillMode=process
TimeoutStopSec=30
LimitNOFILE=1048576
TasksMax=infinity

[Install]
WantedBy=multi-user.target
`
