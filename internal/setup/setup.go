package setup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/config"
)

// Options is what Run installs and how it logs in.
type Options struct {
	// Agent is the agent.yaml to install. Run sets JoinTokenFile to
	// TokenPath; an empty Name becomes the host's own name (uname -n,
	// lowercased).
	Agent config.AgentFile
	// LB, when set, makes Run install a balancer node that follows a
	// server instead of the agent (Agent is then unused): the binary,
	// LBConfigPath, the join token at LBTokenPath until the node has
	// joined, and LBUnit. The service takes a new binary or lb.yaml with
	// `systemctl reload shoal-lb` (the listener handoff), not a restart.
	LB *LBNode
	// Token is the one-time join token. It is written only while the
	// agent (or node) has not joined (its data directory holds no
	// node.crt), and required then.
	Token string
	// KeyFile is a private key to log in with (ssh -i). Encrypted keys are
	// refused: load them into the SSH agent instead.
	KeyFile string
	// AgentSocket is the SSH agent's socket; "" means $SSH_AUTH_SOCK. An
	// unreachable agent is an error only when there is no KeyFile.
	AgentSocket string
	// KnownHosts is the known_hosts file that must vouch for the host's
	// key; "" means ~/.ssh/known_hosts.
	KnownHosts string
	// Binary is the shoal binary to install; "" means the running one
	// (os.Executable). It must be a Linux (ELF) executable for the host's
	// CPU, which Run checks against uname -m before changing anything.
	Binary string
	// Dial opens the TCP connection to the host (a proxy, a jump host, a
	// network namespace); nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Item is what Run did to one part of the installation.
type Item struct {
	Name    string // binary, config, join token, unit, service
	Changed bool
	Did     string // such as "installed 1a2b3c4d5e6f (was 9f8e7d6c5b4a)" or "unchanged"
}

func (i Item) String() string { return i.Name + ": " + i.Did }

// Report lists what Run did, in order.
type Report struct {
	Target Target
	Items  []Item
}

// Changed reports whether Run changed anything on the host.
func (r Report) Changed() bool {
	for _, it := range r.Items {
		if it.Changed {
			return true
		}
	}
	return false
}

// ValidateAgent checks the agent.yaml that Options.Agent would produce and
// returns its problems (a config.Problems naming ConfigPath) or nil. An
// empty Name is not a problem: Run takes the host's.
func ValidateAgent(a config.AgentFile) error {
	if a.Name == "" {
		a.Name = "host" // a stand-in: the host's name is known once connected
	}
	_, err := agentYAML(a)
	return err
}

// agentYAML is a's agent.yaml text, checked by config.ParseAgent (the
// schema's one owner) so that the agent will load what is written.
func agentYAML(a config.AgentFile) ([]byte, error) {
	a.JoinTokenFile = TokenPath
	a.File = ""
	return configText("agent config", a, func(data []byte) error {
		_, err := config.ParseAgent(ConfigPath, data)
		return err
	})
}

// configText is doc in YAML under setup's header, checked by check (the
// schema owner's parser, so that the daemon will load what is written).
func configText(what string, doc any, check func(data []byte) error) ([]byte, error) {
	body, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	data := append([]byte("# Written by shoal setup; rerunning shoal setup rewrites it.\n"), body...)
	if err := check(data); err != nil {
		return nil, err
	}
	return data, nil
}

// facts is what the probe learned about the host.
type facts struct {
	systemd, systemctl    bool
	binary, config, token file
	unit                  file
	joined                string // the node certificate found, "" when none
	enabled, active       bool
	otherActive           bool // the other role's service runs (it shares the binary)
	hostname, machine     string
	missingTools          []string
}

// Run installs or upgrades the agent, or the balancer node of o.LB, on t
// (see the package doc), printing
// one line per item to out as it goes (out may be nil), and returns the
// report, partial on error. It changes nothing before it has learned what
// the host holds and checked that it can do all of it: a host without
// systemd, a missing tool, a binary for another CPU, or a token needed and
// not given are refused with nothing changed.
func Run(ctx context.Context, t Target, o Options, out io.Writer) (Report, error) {
	rep := Report{Target: t}
	if out == nil {
		out = io.Discard
	}
	ro, err := roleOf(o)
	if err != nil {
		return rep, err
	}
	token := strings.TrimSpace(o.Token)
	if strings.ContainsAny(token, " \t\r\n") {
		return rep, errors.New("join token contains white space; give the token as shoal join-token printed it")
	}
	if o.KnownHosts == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return rep, fmt.Errorf("known hosts file: %w; give one with --known-hosts", err)
		}
		o.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	if o.AgentSocket == "" {
		o.AgentSocket = os.Getenv("SSH_AUTH_SOCK")
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return rep, fmt.Errorf("find the running shoal binary: %w", err)
		}
		o.Binary = exe
	}
	bin, err := os.Open(o.Binary)
	if err != nil {
		return rep, fmt.Errorf("binary to install: %w", err)
	}
	defer bin.Close()
	cpus, err := binaryMachines(o.Binary, bin)
	if err != nil {
		return rep, err
	}
	h := sha256.New()
	binSize, err := io.Copy(h, bin)
	if err != nil {
		return rep, fmt.Errorf("binary to install: %w", err)
	}
	binSum := hex.EncodeToString(h.Sum(nil))

	client, err := dial(ctx, t, &o)
	if err != nil {
		return rep, err
	}
	defer client.Close()
	// A session's Run has no context: cancelling ctx ends the connection.
	defer context.AfterFunc(ctx, func() { client.Close() })()
	r := &remote{client: client, addr: t.Addr()}

	if err := becomeRoot(ctx, r, t.User); err != nil {
		return rep, err
	}
	f, err := probe(ctx, r, ro)
	if err != nil {
		return rep, err
	}
	switch {
	case !f.systemd:
		return rep, fmt.Errorf("%s has no systemd (/run/systemd/system is missing): shoal setup installs %s as a systemd service; nothing was changed. "+
			"Without systemd, install the binary and run `%s` under the host's own supervisor", r.addr, ro.what, ro.command)
	case !f.systemctl:
		return rep, fmt.Errorf("%s runs systemd but has no systemctl on root's PATH; nothing was changed", r.addr)
	case len(f.missingTools) > 0:
		return rep, fmt.Errorf("%s lacks %s, which setup uses to write files safely; nothing was changed", r.addr, strings.Join(f.missingTools, ", "))
	case cpus != nil && !slices.Contains(cpus, f.machine):
		return rep, fmt.Errorf("%s runs on %s (uname -m), but %s is built for %s; give a shoal built for the host (--binary); nothing was changed",
			r.addr, f.machine, o.Binary, cpus[0])
	case f.joined == "" && token == "":
		return rep, fmt.Errorf("%s on %s has not joined (no node certificate in %s): give a join token (--token or --token-file; shoal join-token prints one); nothing was changed", ro.what, r.addr, ro.dataDir)
	}

	name := ro.name
	if name == "" {
		name = strings.ToLower(f.hostname)
		if !config.ValidNodeName(name) {
			return rep, fmt.Errorf("%s is named %q, which is not a valid name in a fleet (lowercase letters, digits, '.' and '-'; up to 63): give one with --name; nothing was changed", r.addr, f.hostname)
		}
	}
	cfg, err := ro.render(name)
	if err != nil {
		return rep, err
	}

	report := func(it Item) {
		rep.Items = append(rep.Items, it)
		fmt.Fprintln(out, it)
	}
	var restartFor []string

	// The binary.
	if f.binary.is(binSum, "0755") {
		report(Item{Name: "binary", Did: "unchanged (" + short(binSum) + ")"})
	} else {
		if _, err := bin.Seek(0, io.SeekStart); err != nil {
			return rep, fmt.Errorf("binary to install: %w", err)
		}
		if err := r.writeFile(ctx, BinaryPath, "0755", binSize, binSum, bin); err != nil {
			return rep, err
		}
		did := "installed " + short(binSum) + " (new)"
		if f.binary.sum != "" {
			did = "installed " + short(binSum) + " (was " + short(f.binary.sum) + f.binary.drift("0755") + ")"
		}
		report(Item{Name: "binary", Changed: true, Did: did})
		restartFor = append(restartFor, "binary")
	}

	// The configuration.
	if changed, err := r.put(ctx, ro.configPath, "0644", cfg, f.config); err != nil {
		return rep, err
	} else if changed {
		report(Item{Name: "config", Changed: true, Did: "written " + ro.configPath})
		restartFor = append(restartFor, "config")
	} else {
		report(Item{Name: "config", Did: "unchanged"})
	}

	// The join token, while the agent has not joined.
	if f.joined != "" {
		report(Item{Name: "join token", Did: "not needed (" + ro.what + " has joined: " + f.joined + ")"})
	} else if changed, err := r.put(ctx, ro.tokenPath, "0600", []byte(token), f.token); err != nil {
		return rep, err
	} else if changed {
		report(Item{Name: "join token", Changed: true, Did: "written " + ro.tokenPath})
		restartFor = append(restartFor, "join token")
	} else {
		report(Item{Name: "join token", Did: "unchanged"})
	}

	// The unit.
	if changed, err := r.put(ctx, ro.unitPath, "0644", []byte(ro.unit), f.unit); err != nil {
		return rep, err
	} else if changed {
		if _, err := r.run(ctx, "systemctl daemon-reload", "systemctl daemon-reload", nil); err != nil {
			return rep, err
		}
		report(Item{Name: "unit", Changed: true, Did: "written " + ro.unitPath + ", systemd reloaded"})
		restartFor = append(restartFor, "unit")
	} else {
		report(Item{Name: "unit", Did: "unchanged"})
	}

	// The service. A service enabled and started by hand is left as it
	// is, unless what it runs changed.
	verbs, did := ro.serviceStep(f.enabled, f.active, restartFor)
	if len(verbs) == 0 {
		report(Item{Name: "service", Did: "unchanged (running)"})
		return rep, nil
	}
	if err := systemctl(ctx, r, ro.service, verbs...); err != nil {
		return rep, err
	}
	report(Item{Name: "service", Changed: true, Did: did})

	// The other role's service on this host runs the same file: a new
	// binary there too, or a later setup of it would find the binary
	// up to date and leave the old build running.
	if slices.Contains(restartFor, "binary") && f.otherActive {
		verb, did := "restart", "restarted "+ro.other+" (binary changed; it runs the same file; instances keep running)"
		if ro.other == LBService {
			verb, did = "reload", "reloaded "+ro.other+" (binary changed; it runs the same file; the new process took over the listeners)"
		}
		if err := systemctl(ctx, r, ro.other, verb); err != nil {
			return rep, err
		}
		report(Item{Name: "other service", Changed: true, Did: did})
	}
	return rep, nil
}

// systemctl runs `systemctl verb service` on the host for each verb, in
// order.
func systemctl(ctx context.Context, r *remote, service string, verbs ...string) error {
	for _, verb := range verbs {
		cmd := "systemctl " + verb + " " + service
		if _, err := r.run(ctx, cmd, cmd, nil); err != nil {
			return fmt.Errorf("%w (see journalctl -u %s on the host)", err, service)
		}
	}
	return nil
}

// put writes data to path unless the host's copy, was, holds it already
// with this mode and root's ownership, and reports whether it wrote.
func (r *remote) put(ctx context.Context, path, mode string, data []byte, was file) (bool, error) {
	sum := sha256Hex(data)
	if was.is(sum, mode) {
		return false, nil
	}
	return true, r.writeFile(ctx, path, mode, int64(len(data)), sum, bytes.NewReader(data))
}

// file is a file on the host as the probe saw it; zero when missing.
type file struct {
	sum   string // sha256, hex
	attrs string // "<octal mode> <uid> <gid>", as stat -c '%a %u %g' prints them
}

// is reports whether the file holds content with sha256 sum, has mode
// (octal, "0644") and belongs to root. A file that drifted from its mode
// or owner (a token made readable by all) is written again.
func (f file) is(sum, mode string) bool {
	return f.sum == sum && f.attrs == strings.TrimLeft(mode, "0")+" 0 0"
}

// drift describes how the file's mode or owner differ from mode and root,
// or "" when they do not.
func (f file) drift(mode string) string {
	if f.attrs == strings.TrimLeft(mode, "0")+" 0 0" {
		return ""
	}
	return ", mode and owner " + f.attrs
}

// becomeRoot makes r run as root: directly when user is root, else
// through sudo -n, which must not ask for a password.
func becomeRoot(ctx context.Context, r *remote, user string) error {
	uid, err := r.run(ctx, "id -u", "id -u", nil)
	if err != nil {
		return err
	}
	// The last line: a login shell's startup files may print before it.
	lines := strings.Split(strings.TrimSpace(string(uid)), "\n")
	if strings.TrimSpace(lines[len(lines)-1]) == "0" {
		return nil
	}
	_, err = r.run(ctx, "sudo -n true", "sudo -n true", nil)
	var re *RemoteError
	switch {
	case err == nil:
		r.sudo = true
		return nil
	case errors.As(err, &re) && re.Status == 127:
		return fmt.Errorf("%s: %s is not root and sudo is not installed: log in as root, or install sudo and let %s use it without a password", r.addr, user, user)
	case errors.As(err, &re):
		return fmt.Errorf("%s: %s is not root and `sudo -n` refused (%s): allow %s to run sudo without a password (NOPASSWD), or log in as root", r.addr, user, strings.TrimSpace(re.Stderr), user)
	}
	return err
}

// probe asks the host, as root, for everything Run decides on. It changes
// nothing.
func probe(ctx context.Context, r *remote, ro role) (facts, error) {
	script := `sum() { if [ -f "$1" ]; then echo $(sha256sum < "$1" | cut -d' ' -f1) $(stat -c '%a %u %g' "$1"); fi; }
[ -d /run/systemd/system ] && echo systemd=yes
command -v systemctl >/dev/null 2>&1 && echo systemctl=yes
for t in sha256sum mktemp sync stat; do command -v $t >/dev/null 2>&1 || echo missing=$t; done
echo binary=$(sum ` + quote(BinaryPath) + `)
echo config=$(sum ` + quote(ro.configPath) + `)
echo token=$(sum ` + quote(ro.tokenPath) + `)
echo unit=$(sum ` + quote(ro.unitPath) + `)
echo joined=$(find ` + quote(ro.dataDir) + ` -maxdepth 2 -name node.crt -type f 2>/dev/null | head -n 1)
echo hostname=$(uname -n)
echo machine=$(uname -m)
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl is-enabled --quiet ` + ro.service + ` 2>/dev/null && echo enabled=yes
	systemctl is-active --quiet ` + ro.service + ` 2>/dev/null && echo active=yes
	systemctl is-active --quiet ` + ro.other + ` 2>/dev/null && echo other=yes
fi
exit 0
`
	out, err := r.run(ctx, "look at the host", script, nil)
	if err != nil {
		return facts{}, err
	}
	var f facts
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "systemd":
			f.systemd = true
		case "systemctl":
			f.systemctl = true
		case "missing":
			f.missingTools = append(f.missingTools, v)
		case "binary":
			f.binary = parseFile(v)
		case "config":
			f.config = parseFile(v)
		case "token":
			f.token = parseFile(v)
		case "unit":
			f.unit = parseFile(v)
		case "joined":
			f.joined = v
		case "hostname":
			f.hostname = v
		case "machine":
			f.machine = v
		case "enabled":
			f.enabled = true
		case "active":
			f.active = true
		case "other":
			f.otherActive = true
		}
	}
	return f, nil
}

// parseFile reads the probe's "<sha256> <mode> <uid> <gid>"; "" is a
// missing file.
func parseFile(v string) file {
	sum, attrs, _ := strings.Cut(v, " ")
	return file{sum: sum, attrs: attrs}
}

// dataDir is a's data directory, as the agent will resolve it: relative
// to the directory of ConfigPath.
func dataDir(a config.AgentFile) string {
	switch {
	case a.DataDir == "":
		return config.DefaultAgentDataDir
	case filepath.IsAbs(a.DataDir):
		return a.DataDir
	}
	return filepath.Join(filepath.Dir(ConfigPath), a.DataDir)
}

// short is a sha256's first 12 hex digits, enough to tell builds apart.
func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}
