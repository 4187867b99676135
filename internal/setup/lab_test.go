package setup

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// lab is a host to set up: a real OpenSSH sshd, with its own host key,
// config and authorized_keys in a temporary directory, in namespaces of
// its own (mount, network, PID, UTS) so that nothing setup writes reaches
// the real machine:
//
//   - /etc is an overlay whose upper layer is in the lab's directory, so
//     that /etc/shoal and /etc/systemd/system can be written with the real
//     /etc untouched; there the lab gives root an empty home (the real
//     one's shell startup files would slow each session) and adds two
//     users: labuser, who may not use sudo, and deployer, who may without
//     a password (sudo's PATH starting with the recording systemctl);
//   - /usr/local/bin and /run are empty tmpfs mounts; /run/sshd is made,
//     and /run/systemd/system when the lab has systemd;
//   - the network namespace has only its loopback, where sshd listens on
//     127.0.0.1; the test dials into it (lab.dial);
//   - systemd is not PID 1 here: systemctl is a recording script first on
//     the sessions' PATH, the one fake, of a system outside Shoal.
//
// Killing the lab's process group ends the PID namespace's first process,
// which ends every process in it, and with them the mounts.
type lab struct {
	dir        string
	pid        int // sshd's pid, as this process sees it
	port       int
	netns      *os.File
	sshd       *testenv.Process
	key        string // the client's private key file
	hostKey    ssh.PublicKey
	knownHosts string // a known_hosts file holding the host's key
	systemctl  string // the recording's log
}

const labHostname = "Lab-Host.example" // uname -n in the lab; setup lowercases it

// newLab starts a lab; with systemd false, /run/systemd/system is missing.
func newLab(t *testing.T, systemd bool) *lab {
	t.Helper()
	// CI (.ci/run) runs as root and installs the tools: there a missing
	// one fails the test instead of skipping it.
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("the lab needs root: mount, network and PID namespaces")
	}
	for _, tool := range []string{"/usr/sbin/sshd", "unshare", "ip", "nsenter", "systemd-analyze", "sudo"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("the lab needs %s (apt-get install openssh-server iproute2 util-linux systemd sudo): %v", tool, err)
		}
	}
	l := &lab{dir: t.TempDir()}
	// labuser (not root) reads authorized_keys here; t.TempDir makes both
	// levels 0700.
	for _, d := range []string{l.dir, filepath.Dir(l.dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc-upper", "etc-work", "bin", "root"} {
		if err := os.Mkdir(filepath.Join(l.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hostPub := writeKey(t, filepath.Join(l.dir, "host_key"), "")
	clientPub := writeKey(t, filepath.Join(l.dir, "id_ed25519"), "")
	l.key = filepath.Join(l.dir, "id_ed25519")
	l.hostKey = hostPub
	write(t, filepath.Join(l.dir, "authorized_keys"), 0o644, string(ssh.MarshalAuthorizedKey(clientPub)))

	// Any port is free in the lab's own network namespace; an ephemeral
	// one makes known_hosts use its [host]:port form.
	n, err := rand.Int(rand.Reader, big.NewInt(60999-32768))
	if err != nil {
		t.Fatal(err)
	}
	l.port = 32768 + int(n.Int64())
	l.knownHosts = filepath.Join(l.dir, "known_hosts")
	write(t, l.knownHosts, 0o644, knownhosts.Line([]string{l.addr()}, hostPub)+"\n")

	l.systemctl = filepath.Join(l.dir, "systemctl.log")
	write(t, filepath.Join(l.dir, "bin", "systemctl"), 0o755, `#!/bin/sh
# A recording fake of systemctl: systemd is not PID 1 in the lab.
log=`+l.systemctl+`
echo "$*" >> "$log"
case "$1" in
is-enabled) grep -qxE "enable( --now)? $3" "$log" ;;
is-active) grep -qxE "(enable --now|start|restart) $3" "$log" ;;
esac
`)
	write(t, filepath.Join(l.dir, "sshd_config"), 0o644, fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s/host_key
PidFile none
AuthorizedKeysFile %s/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
LogLevel VERBOSE
SetEnv PATH=%s/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
`, l.port, l.dir, l.dir, l.dir))

	mkSystemd := ""
	if systemd {
		mkSystemd = "mkdir -p /run/systemd/system"
	}
	script := `set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir=` + l.dir + `/etc-upper,workdir=` + l.dir + `/etc-work /etc
mount -t tmpfs -o mode=0755 lab-bin /usr/local/bin
mount -t tmpfs -o mode=0755 lab-run /run
mkdir -p /run/sshd
` + mkSystemd + `
awk -F: -v OFS=: '$1 == "root" { $6 = "` + l.dir + `/root" } { print }' /etc/passwd > ` + l.dir + `/passwd
cat ` + l.dir + `/passwd > /etc/passwd
echo 'labuser:x:4242:4242:lab:/:/bin/sh' >> /etc/passwd
echo 'deployer:x:4243:4243:lab:/:/bin/sh' >> /etc/passwd
echo 'labuser:*:20000:0:99999:7:::' >> /etc/shadow
echo 'deployer:*:20000:0:99999:7:::' >> /etc/shadow
mkdir -p /etc/sudoers.d
printf '%s\n' 'Defaults:deployer secure_path="` + l.dir + `/bin:/usr/sbin:/usr/bin:/sbin:/bin"' 'deployer ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/lab
chmod 0440 /etc/sudoers.d/lab
echo '127.0.1.1 ` + labHostname + `' >> /etc/hosts
echo ` + labHostname + ` > /proc/sys/kernel/hostname
ip link set lo up
exec /usr/sbin/sshd -D -e -f ` + l.dir + `/sshd_config
`
	l.sshd = testenv.StartCmd(t, exec.Command("unshare", "--mount", "--net", "--pid", "--uts", "--fork", "--kill-child", "--", "sh", "-c", script))
	ctx := testenv.Context(t, 30*time.Second)
	if _, err := l.sshd.WaitForLine(ctx, regexp.MustCompile(`Server listening on 127\.0\.0\.1 port`)); err != nil {
		t.Fatalf("sshd in the lab: %v", err)
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", l.sshd.Cmd.Process.Pid, l.sshd.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if l.pid, err = strconv.Atoi(strings.TrimSpace(string(children))); err != nil {
		t.Fatalf("the lab's sshd: unshare's children are %q", children)
	}
	if l.netns, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", l.pid)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.netns.Close() })
	return l
}

// addr is sshd's address, inside the lab.
func (l *lab) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.port)) }

// target logs in to the lab as user.
func (l *lab) target(user string) Target { return Target{User: user, Host: "127.0.0.1", Port: l.port} }

// dial connects from inside the lab's network namespace: the socket is made
// on an OS thread moved into it. The thread stays locked to its goroutine,
// so Go ends it with the goroutine instead of reusing it.
func (l *lab) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(l.netns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("enter the lab's network namespace: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		done <- result{c, err}
	}()
	r := <-done
	return r.conn, r.err
}

// options are Options that log in to the lab with its key and known_hosts.
func (l *lab) options() Options {
	return Options{
		KeyFile:     l.key,
		AgentSocket: filepath.Join(l.dir, "no-agent"),
		KnownHosts:  l.knownHosts,
		Dial:        l.dial,
	}
}

// path is p as the lab sees it.
func (l *lab) path(p string) string { return fmt.Sprintf("/proc/%d/root%s", l.pid, p) }

// calls are the recorded systemctl command lines that change something
// (not the is-enabled and is-active questions).
func (l *lab) calls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(l.systemctl)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line != "" && !strings.HasPrefix(line, "is-") {
			out = append(out, line)
		}
	}
	return out
}

// inLab runs a command in the lab's mount namespace and returns its
// standard output and error apart.
func (l *lab) inLab(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(l.pid), "-m", "--"}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// writeKey writes a new ed25519 private key in OpenSSH form to file (0600),
// encrypted when passphrase is set, and returns its public key.
func writeKey(t *testing.T, file, passphrase string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	write(t, file, 0o600, string(pem.EncodeToMemory(block)))
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func write(t *testing.T, file string, mode os.FileMode, data string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func (l *lab) portString() string { return strconv.Itoa(l.port) }

// knownhostsLine files key under the lab's address.
func knownhostsLine(l *lab, key ssh.PublicKey) string {
	return knownhosts.Line([]string{l.addr()}, key) + "\n"
}

// sshFingerprint is the lab's host key fingerprint, as ssh-keygen -l prints it.
func sshFingerprint(l *lab) string { return ssh.FingerprintSHA256(l.hostKey) }
