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

// Where Run installs a balancer node (Options.LB) on a host. The binary is
// BinaryPath, the agent's: a host that runs both runs one build.
const (
	LBConfigPath = "/etc/shoal/lb.yaml"
	LBTokenPath  = "/etc/shoal/lb-join-token"
	LBUnitPath   = "/etc/systemd/system/shoal-lb.service"
	// LBService is the balancer unit's name for systemctl.
	LBService = "shoal-lb"
	// DefaultLBDataDir is the node's data directory when LBNode.DataDir
	// is "": its key and certificate (pki/) and its last configuration.
	DefaultLBDataDir = "/var/lib/shoal/lb"
)

// LBUnit is the systemd unit that runs a balancer node:
// examples/lb/shoal-lb.service under setup's header (a test keeps them
// the same).
//
// ExecReload sends SIGUSR2, the listener handoff: the running process
// starts BinaryPath as it is on disk, which reads LBConfigPath, takes over
// the listening sockets and becomes the main process (NotifyAccess=all
// lets it say MAINPID); the old process drains. So Run takes a new binary
// or lb.yaml with `systemctl reload shoal-lb`, with no failed request, and
// restarts only for a changed unit. KillMode=control-group: a stop drains
// every process of the unit, a draining old one included.
const LBUnit = "# Written by shoal setup; rerunning shoal setup rewrites it.\n" + lbUnitBody

const lbUnitBody = `[Unit]
Description=Shoal load balancer (shoal lb)
Documentation=https://github.com/shoal-dev/shoal/blob/main/docs/lb-configuration.md
Wants=network-online.target
After=network-online.target

[Service]
# Type=notify: shoal lb sends READY=1 once it accepts on every listener.
# NotifyAccess=all: after an upgrade the new process (a child of the old
# one) sends MAINPID=<its pid>, and systemd follows it.
Type=notify
NotifyAccess=all
ExecStart=` + BinaryPath + ` lb -c ` + LBConfigPath + `
# A reload is an upgrade with no gap: SIGUSR2 makes the running process
# start ` + BinaryPath + ` again (the file as it is now, so a new binary
# installed there takes over), which reads lb.yaml, takes over the
# listening sockets and becomes the main process; the old one drains.
ExecReload=/bin/kill -USR2 $MAINPID
# A stop drains every process of the unit (a draining old one included):
# SIGTERM, then up to limits.shutdown_timeout (30 s by default).
KillMode=control-group
TimeoutStopSec=45s
Restart=on-failure
RestartSec=1s
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`
