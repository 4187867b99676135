package setup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"
)

// remote runs shell scripts on the host, one SSH session each, as root:
// directly, or through `sudo -n` when the login user is not root.
type remote struct {
	client *ssh.Client
	addr   string
	sudo   bool
}

// RemoteError is a script that failed on the host.
type RemoteError struct {
	Addr   string
	Step   string // what the script was doing, such as "write /etc/shoal/agent.yaml"
	Status int    // exit status; -1 when the session ended without one
	Stderr string
}

func (e *RemoteError) Error() string {
	msg := fmt.Sprintf("%s: %s: exit status %d", e.Addr, e.Step, e.Status)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// run runs script with sh on the host, feeding it stdin (nil: nothing) and
// returning its standard output. step names the work for errors.
func (r *remote) run(ctx context.Context, step, script string, stdin io.Reader) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r.addr, step, context.Cause(ctx))
	}
	s, err := r.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: open session: %w", r.addr, step, err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr, s.Stdin = &stdout, &stderr, stdin
	cmd := "sh -c " + quote(script)
	if r.sudo {
		cmd = "sudo -n " + cmd
	}
	if err := s.Run(cmd); err != nil {
		var exit *ssh.ExitError
		var missing *ssh.ExitMissingError
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%s: %s: %w", r.addr, step, context.Cause(ctx))
		case errors.As(err, &exit):
			return nil, &RemoteError{Addr: r.addr, Step: step, Status: exit.ExitStatus(), Stderr: stderr.String()}
		case errors.As(err, &missing):
			return nil, &RemoteError{Addr: r.addr, Step: step, Status: -1, Stderr: stderr.String()}
		}
		return nil, fmt.Errorf("%s: %s: %w", r.addr, step, err)
	}
	return stdout.Bytes(), nil
}

// writeFile replaces file on the host with data, mode given in octal
// ("0644"), only through a temporary file in the same directory that is
// checked against data's sha256, synced and renamed: a cut connection or a
// full disk leaves the old file. The directory is made (0755) if missing.
// mktemp makes the temporary file 0600, so a secret is never readable by
// others on the way.
func (r *remote) writeFile(ctx context.Context, file, mode string, size int64, sum string, data io.Reader) error {
	dir, base := path.Split(file)
	script := `set -e
mkdir -p ` + quote(dir) + `
umask 077
tmp=$(mktemp ` + quote(dir+"."+base+".XXXXXX") + `)
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
got=$(sha256sum < "$tmp")
if [ "${got%% *}" != ` + quote(sum) + ` ]; then
	echo "received $(wc -c < "$tmp") bytes of ` + fmt.Sprint(size) + ` with sha256 ${got%% *}, want ` + sum + `" >&2
	exit 1
fi
chmod ` + mode + ` "$tmp"
sync "$tmp"
mv -f "$tmp" ` + quote(file) + `
trap - EXIT
sync ` + quote(dir) + ` 2>/dev/null || true
`
	_, err := r.run(ctx, "write "+file, script, data)
	return err
}

// quote makes s one word for a POSIX shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sha256Hex is the hex sha256 of data, as sha256sum prints it.
func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
