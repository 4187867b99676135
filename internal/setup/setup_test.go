package setup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/testenv"
)

const labToken = "shoal-join-v1.c2VjcmV0.pin"

func agentConfig() config.AgentFile {
	return config.AgentFile{Server: config.URLList{"https://10.0.0.1:7440"}, Zone: "eu-1", Advertise: "10.0.0.7"}
}

// TestSetupInstallsThenChangesNothing installs the running binary on a
// fresh host, checks every file, the unit (systemd-analyze verify, with no
// output on stderr) and the systemctl calls, then runs again and sees
// nothing change.
func TestSetupInstallsThenChangesNothing(t *testing.T) {
	l := newLab(t, true)
	ctx := testenv.Context(t, 2*time.Minute)
	o := l.options()
	o.Agent = agentConfig()
	o.Token = labToken
	var out bytes.Buffer
	rep, err := Run(ctx, l.target("root"), o, &out)
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, out.String())
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want := fileSum(t, exe)
	checkFile(t, l.path(BinaryPath), 0o755, "")
	if got := fileSum(t, l.path(BinaryPath)); got != want {
		t.Errorf("installed binary has sha256 %s; the running one %s", got, want)
	}
	checkFile(t, l.path(TokenPath), 0o600, labToken)
	checkFile(t, l.path(UnitPath), 0o644, Unit)
	checkFile(t, l.path(ConfigPath), 0o644, "")
	data, err := os.ReadFile(l.path(ConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseAgent(ConfigPath, data)
	if err != nil {
		t.Fatalf("written agent.yaml does not load: %v\n%s", err, data)
	}
	if !slices.Equal(cfg.Server, []string{"https://10.0.0.1:7440"}) || cfg.Name != strings.ToLower(labHostname) || cfg.Zone != "eu-1" ||
		cfg.Advertise != "10.0.0.7" || cfg.JoinTokenFile != TokenPath || cfg.DataDir != config.DefaultAgentDataDir {
		t.Errorf("written agent.yaml = %+v\n%s", cfg, data)
	}
	if fi, err := os.Stat(l.path("/etc/shoal")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("/etc/shoal: %v, %v; want a 0755 directory", fi.Mode(), err)
	}
	verifyUnit(t, l, UnitPath)
	checkCalls(t, l, "daemon-reload", "enable --now shoal-agent")
	checkOutput(t, "first", &out,
		"binary: installed "+want[:12]+" (new)",
		"config: written "+ConfigPath,
		"join token: written "+TokenPath,
		"unit: written "+UnitPath+", systemd reloaded",
		"service: enabled and started",
	)
	if !rep.Changed() || len(rep.Items) != 5 {
		t.Errorf("report = %+v; want 5 items, changed", rep)
	}

	// Again: nothing to do, and it says so.
	out.Reset()
	rep, err = Run(ctx, l.target("root"), o, &out)
	if err != nil {
		t.Fatalf("second setup: %v\n%s", err, out.String())
	}
	checkOutput(t, "second", &out,
		"binary: unchanged ("+want[:12]+")",
		"config: unchanged",
		"join token: unchanged",
		"unit: unchanged",
		"service: unchanged (running)",
	)
	if rep.Changed() {
		t.Errorf("second report = %+v; want nothing changed", rep)
	}
	if got := l.calls(t); len(got) != 2 {
		t.Errorf("systemctl calls after the second run = %q; want no new ones", got)
	}

	// A token made readable by all is written again, 0600.
	if err := os.Chmod(l.path(TokenPath), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err = Run(ctx, l.target("root"), o, &out); err != nil {
		t.Fatalf("third setup: %v\n%s", err, out.String())
	}
	checkFile(t, l.path(TokenPath), 0o600, labToken)
	if got := lines(out.String()); len(got) != 5 || got[2] != "join token: written "+TokenPath ||
		got[4] != "service: restarted (join token changed; instances keep running)" {
		t.Errorf("third output:\n%s", out.String())
	}
}

// TestSetupUpgradesBinary replaces a changed binary atomically and restarts
// the service, and leaves out the join token once the agent has joined.
func TestSetupUpgradesBinary(t *testing.T) {
	l := newLab(t, true)
	ctx := testenv.Context(t, 2*time.Minute)
	v1, v2 := twoBuilds(t)
	data := t.TempDir() // the agent's data dir: the lab sees the test's /tmp

	o := l.options()
	o.Agent = agentConfig()
	o.Agent.Name = "web-1"
	o.Agent.DataDir = data
	o.Token = labToken
	o.Binary = v1
	if _, err := Run(ctx, l.target("root"), o, nil); err != nil {
		t.Fatalf("setup v1: %v", err)
	}
	checkFile(t, l.path(BinaryPath), 0o755, readFile(t, v1))

	// The agent joins (pki keeps node.crt in its data dir), and v2 comes.
	join(t, data)
	o.Binary, o.Token = v2, ""
	var out bytes.Buffer
	rep, err := Run(ctx, l.target("root"), o, &out)
	if err != nil {
		t.Fatalf("setup v2: %v\n%s", err, out.String())
	}
	checkFile(t, l.path(BinaryPath), 0o755, readFile(t, v2))
	checkFile(t, l.path(TokenPath), 0o600, labToken) // left as it was
	s1, s2 := fileSum(t, v1), fileSum(t, v2)
	checkOutput(t, "v2", &out,
		"binary: installed "+s2[:12]+" (was "+s1[:12]+")",
		"config: unchanged",
		"join token: not needed (the agent has joined: "+filepath.Join(data, "pki", "node.crt")+")",
		"unit: unchanged",
		"service: restarted (binary changed; instances keep running)",
	)
	if !rep.Changed() {
		t.Error("report says nothing changed")
	}
	checkCalls(t, l, "daemon-reload", "enable --now shoal-agent", "restart shoal-agent")
	checkNoLeftovers(t, l)
}

// TestSetupThroughSudo installs as a user who is not root, through sudo:
// the files belong to root all the same, and a second run changes nothing.
func TestSetupThroughSudo(t *testing.T) {
	l := newLab(t, true)
	ctx := testenv.Context(t, 2*time.Minute)
	o := l.options()
	o.Agent = agentConfig()
	o.Agent.Name = "web-2"
	o.Token = labToken
	o.Binary = filepath.Join(t.TempDir(), "shoal")
	copyFile(t, "/bin/true", o.Binary)
	if _, err := Run(ctx, l.target("deployer"), o, nil); err != nil {
		t.Fatalf("setup as deployer: %v", err)
	}
	for file, mode := range map[string]os.FileMode{BinaryPath: 0o755, ConfigPath: 0o644, TokenPath: 0o600, UnitPath: 0o644} {
		checkFile(t, l.path(file), mode, "")
		var st unix.Stat_t
		if err := unix.Stat(l.path(file), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: owner %d:%d (%v), want root", file, st.Uid, st.Gid, err)
		}
	}
	checkCalls(t, l, "daemon-reload", "enable --now shoal-agent")
	rep, err := Run(ctx, l.target("deployer"), o, nil)
	if err != nil || rep.Changed() {
		t.Errorf("second setup as deployer: %+v, %v; want nothing changed", rep, err)
	}
}

// TestSetupRefuses checks the refusals that come before any change: an
// unknown or changed host key (before logging in), a binary for another
// CPU, a user who is not root and may not use sudo without a password,
// and a missing join token.
func TestSetupRefuses(t *testing.T) {
	l := newLab(t, true)
	ctx := testenv.Context(t, 2*time.Minute)
	base := l.options()
	base.Agent = agentConfig()
	base.Token = labToken

	t.Run("unknown host", func(t *testing.T) {
		o := base
		o.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
		write(t, o.KnownHosts, 0o644, "")
		_, err := Run(ctx, l.target("root"), o, nil)
		var hk *HostKeyError
		if !errors.As(err, &hk) || hk.Changed {
			t.Fatalf("err = %v; want an unknown host key", err)
		}
		checkHostKeyError(t, err, l, o.KnownHosts, "is unknown")
	})
	t.Run("no known_hosts file", func(t *testing.T) {
		o := base
		o.KnownHosts = filepath.Join(t.TempDir(), "missing")
		_, err := Run(ctx, l.target("root"), o, nil)
		checkHostKeyError(t, err, l, o.KnownHosts, "is unknown")
	})
	t.Run("changed host key", func(t *testing.T) {
		o := base
		o.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
		other := writeKey(t, filepath.Join(t.TempDir(), "other"), "")
		write(t, o.KnownHosts, 0o644, "# another host's key, filed under this one\n"+knownhostsLine(l, other))
		_, err := Run(ctx, l.target("root"), o, nil)
		var hk *HostKeyError
		if !errors.As(err, &hk) || !hk.Changed || hk.At != o.KnownHosts+":2" {
			t.Fatalf("err = %v; want a changed host key at %s:2", err, o.KnownHosts)
		}
		checkHostKeyError(t, err, l, o.KnownHosts, "has CHANGED")
	})
	t.Run("not root, sudo wants a password", func(t *testing.T) {
		_, err := Run(ctx, l.target("labuser"), base, nil)
		if err == nil || !strings.Contains(err.Error(), "labuser is not root and `sudo -n` refused (sudo: a password is required)") ||
			!strings.Contains(err.Error(), "NOPASSWD") {
			t.Fatalf("err = %v; want not root and sudo refused", err)
		}
		checkNothingWritten(t, l)
	})
	t.Run("binary for another CPU", func(t *testing.T) {
		o := base
		o.Binary = filepath.Join(t.TempDir(), "shoal")
		elf := []byte(readFile(t, "/bin/true"))
		machine, other := binary.LittleEndian.Uint16(elf[18:]), "aarch64"
		if machine == 183 { // EM_AARCH64: this machine's; claim x86-64
			other = "x86_64"
			binary.LittleEndian.PutUint16(elf[18:], 62)
		} else {
			binary.LittleEndian.PutUint16(elf[18:], 183)
		}
		write(t, o.Binary, 0o755, string(elf))
		_, err := Run(ctx, l.target("root"), o, nil)
		if err == nil || !strings.Contains(err.Error(), "is built for "+other) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("err = %v; want a binary for %s refused", err, other)
		}
		checkNothingWritten(t, l)
	})
	t.Run("no join token", func(t *testing.T) {
		o := base
		o.Token = ""
		_, err := Run(ctx, l.target("root"), o, nil)
		if err == nil || !strings.Contains(err.Error(), "has not joined") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("err = %v; want a missing join token", err)
		}
		checkNothingWritten(t, l)
	})
	if t.Failed() {
		t.Logf("sshd:\n%s", l.sshd.Output())
	}
}

// TestSetupRefusesHostWithoutSystemd refuses a host where systemd does not
// run, after looking only.
func TestSetupRefusesHostWithoutSystemd(t *testing.T) {
	l := newLab(t, false)
	ctx := testenv.Context(t, 2*time.Minute)
	o := l.options()
	o.Agent = agentConfig()
	o.Token = labToken
	_, err := Run(ctx, l.target("root"), o, nil)
	if err == nil || !strings.Contains(err.Error(), "has no systemd (/run/systemd/system is missing)") ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v; want no systemd", err)
	}
	checkNothingWritten(t, l)
}

func checkHostKeyError(t *testing.T, err error, l *lab, file, says string) {
	t.Helper()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	for _, want := range []string{l.addr() + " " + says, "ssh-ed25519 " + sshFingerprint(l), file,
		"ssh-keyscan -t ed25519 -p " + l.portString() + " 127.0.0.1 >> " + file, "nothing was sent"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	checkNothingWritten(t, l)
	// Refused during the key exchange: no key was offered to sshd.
	if out := l.sshd.Output(); strings.Contains(out, "publickey") {
		t.Errorf("sshd saw a login attempt:\n%s", out)
	}
}

// checkNothingWritten fails unless the lab holds none of setup's files and
// systemctl was never asked to change anything.
func checkNothingWritten(t *testing.T, l *lab) {
	t.Helper()
	for _, p := range []string{BinaryPath, "/etc/shoal", UnitPath} {
		if _, err := os.Lstat(l.path(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists in the lab (%v); want nothing written", p, err)
		}
	}
	if entries, err := os.ReadDir(l.path("/usr/local/bin")); err != nil || len(entries) > 0 {
		t.Errorf("/usr/local/bin in the lab holds %v (%v); want nothing", entries, err)
	}
	if calls := l.calls(t); len(calls) > 0 {
		t.Errorf("systemctl calls = %q; want none", calls)
	}
}

func checkFile(t *testing.T, file string, mode os.FileMode, content string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if fi.Mode() != mode {
		t.Errorf("%s has mode %v, want %v", file, fi.Mode(), mode)
	}
	if content == "" {
		return
	}
	data, err := os.ReadFile(file)
	if err != nil || string(data) != content {
		t.Errorf("%s holds %q (%v), want %q", file, data, err, content)
	}
}

func fileSum(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Hex(data)
}

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

// twoBuilds are two small Linux executables of this machine, standing for
// two builds of shoal.
func twoBuilds(t *testing.T) (v1, v2 string) {
	t.Helper()
	bins := t.TempDir()
	v1, v2 = filepath.Join(bins, "shoal-v1"), filepath.Join(bins, "shoal-v2")
	copyFile(t, "/bin/true", v1)
	copyFile(t, "/bin/false", v2)
	return v1, v2
}

// join makes data the data directory of a node that has joined: pki
// keeps node.crt there.
func join(t *testing.T, data string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(data, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(data, "pki", "node.crt"), 0o644, "certificate")
}

// checkNoLeftovers fails when a temporary file of setup's is left next
// to the binary.
func checkNoLeftovers(t *testing.T, l *lab) {
	t.Helper()
	leftovers, err := filepath.Glob(l.path("/usr/local/bin/.shoal.*"))
	if err != nil || len(leftovers) > 0 {
		t.Errorf("temporary files left in /usr/local/bin: %v %v", leftovers, err)
	}
}

// checkOutput fails unless Run printed want, line by line.
func checkOutput(t *testing.T, run string, out *bytes.Buffer, want ...string) {
	t.Helper()
	if got := lines(out.String()); !slices.Equal(got, want) {
		t.Errorf("%s output:\n%s\nwant:\n%s", run, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// checkCalls fails unless the lab's systemctl was asked to change want,
// in order.
func checkCalls(t *testing.T, l *lab, want ...string) {
	t.Helper()
	if got := l.calls(t); !slices.Equal(got, want) {
		t.Errorf("systemctl calls = %q, want %q", got, want)
	}
}

// verifyUnit runs systemd-analyze verify on the lab's unit file, which
// must pass with nothing on stderr.
func verifyUnit(t *testing.T, l *lab, unit string) {
	t.Helper()
	stdout, stderr, err := l.inLab(t, "systemd-analyze", "verify", unit)
	if err != nil || stderr != "" {
		t.Errorf("systemd-analyze verify %s: %v\nstdout: %s\nstderr: %s", unit, err, stdout, stderr)
	}
}

func readFile(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func copyFile(t *testing.T, from, to string) { t.Helper(); write(t, to, 0o755, readFile(t, from)) }
