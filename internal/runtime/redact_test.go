package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// redactAll feeds the writes to a fresh redactWriter and returns what it wrote.
func redactAll(t testing.TB, secrets []string, writes ...string) string {
	t.Helper()
	var out bytes.Buffer
	rw := newRedactWriter(&out, secrets)
	if rw == nil {
		return strings.Join(writes, "")
	}
	for _, w := range writes {
		if n, err := rw.Write([]byte(w)); err != nil || n != len(w) {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if err := rw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestRedactWriterEverySplit(t *testing.T) {
	secret := "s3cr3t-v4lue"
	text := "a token=" + secret + " and " + secret + "\nnext line\ntail " + secret
	want := "a token=[redacted] and [redacted]\nnext line\ntail [redacted]"
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j++ {
			if got := redactAll(t, []string{secret}, text[:i], text[i:j], text[j:]); got != want {
				t.Fatalf("writes %q %q %q: got %q, want %q", text[:i], text[i:j], text[j:], got, want)
			}
		}
	}
}

func TestRedactWriterCases(t *testing.T) {
	long := strings.Repeat("x", maxHeldLine+100)
	for _, tc := range []struct {
		name    string
		secrets []string
		writes  []string
		want    string
	}{
		{"short values are left alone", []string{"on", "abc"}, []string{"on abc\n"}, "on abc\n"},
		{"no secrets", nil, []string{"plain\n"}, "plain\n"},
		{"overlapping secrets become one mark", []string{"abcdef", "defghi"}, []string{"_abcdefghi_\n"}, "_[redacted]_\n"},
		{"adjacent secrets become one mark", []string{"abcd", "efgh"}, []string{"abcdefgh\n"}, "[redacted]\n"},
		{"a secret inside a longer one", []string{"word", "password"}, []string{"my password\n"}, "my [redacted]\n"},
		{"multi-line secret in separate writes", []string{"line-one\nline-two"}, []string{"x line-one\n", "line-two y\n"}, "x [redacted]\n[redacted] y\n"},
		{"multi-line secret with CRLF", []string{"line-one\r\nline-two"}, []string{"line-one\r\n", "line-two\n"}, "[redacted]\r\n[redacted]\n"},
		{"partial line flushed at the end", []string{"secret-1"}, []string{"no newline secret-", "1"}, "no newline [redacted]"},
		{"a secret across a forced cut of a long line", []string{"0123456789"},
			[]string{long + "01234", "56789 end\n"}, long + "[redacted] end\n"},
		{"a secret split at the forced cut point", []string{"0123456789"},
			[]string{long[:maxHeldLine-3] + "0123456", "789 end\n"}, long[:maxHeldLine-3] + "[redacted] end\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := redactAll(t, tc.secrets, tc.writes...); got != tc.want {
				if len(got) > 200 {
					got, tc.want = "..."+got[len(got)-100:], "..."+tc.want[len(tc.want)-100:]
				}
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRedactWriterHoldsLittle checks that complete lines are written at
// once and that a line without its newline is held only up to its bound.
func TestRedactWriterHoldsLittle(t *testing.T) {
	var out bytes.Buffer
	rw := newRedactWriter(&out, []string{"secret-value"})
	rw.Write([]byte("line one\npartial"))
	if got := out.String(); got != "line one\n" {
		t.Fatalf("written %q, want the complete line only", got)
	}
	rw.Write(bytes.Repeat([]byte("y"), 3*maxHeldLine))
	if held := len(rw.buf); held >= len("secret-value") {
		t.Fatalf("%d bytes held after a very long partial line, want fewer than a secret's length", held)
	}
}

// FuzzRedactWriter holds the streaming redaction to two properties for any
// output and any split into writes: no secret appears in what is written,
// and text that holds no part of a secret passes unchanged.
func FuzzRedactWriter(f *testing.F) {
	f.Add("token=hunter22\n", "hunter22", 3, 9)
	f.Add("hunter22hunter22", "hunter22", 5, 12)
	f.Add("x\nhun\nter22\n", "hun\nter22", 1, 6)
	f.Add("nothing to hide here\n", "zzzz", 4, 4)
	f.Fuzz(func(t *testing.T, text, secret string, i, j int) {
		if len(text) > 4096 || len(secret) > 64 {
			return
		}
		i = min(max(i, 0), len(text))
		j = min(max(j, i), len(text))
		got := redactAll(t, []string{secret}, text[:i], text[i:j], text[j:])
		var pieces []string
		for _, line := range strings.Split(secret, "\n") {
			line = strings.TrimSuffix(line, "\r")
			if len(line) >= minSecretLen {
				pieces = append(pieces, line)
			}
		}
		for _, p := range pieces {
			// A mark next to text can spell a secret only if the secret
			// contains the mark's own text; leave such secrets out.
			if strings.ContainsAny(p, "[]") {
				return
			}
			if strings.Contains(got, p) {
				t.Fatalf("secret %q in output %q (input %q, writes split at %d, %d)", p, got, text, i, j)
			}
		}
		if len(pieces) == 0 && got != text {
			t.Fatalf("no secret to hide, yet %q became %q", text, got)
		}
	})
}

// pipeUnread returns (TIOCINQ, which is FIONREAD on Linux) how many bytes of an instance's output wait in its
// pipe, not yet read by the copier.
func pipeUnread(inst *instance) (int, error) {
	raw, err := inst.g.out.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := raw.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}

// TestInstanceLogRedactsSecretAcrossWrites runs a child that prints a
// secret in two writes, with the runtime's read of the first write
// complete before the second is made, and checks that the log file never
// holds the secret and is readable by its owner only.
func TestInstanceLogRedactsSecretAcrossWrites(t *testing.T) {
	data := t.TempDir()
	// An out.log left by an earlier version with a loose mode, and a rotated one.
	work := filepath.Join(data, "instances", "talker")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"out.log", "out.log.1"} {
		if err := os.WriteFile(filepath.Join(work, name), []byte("old line\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := newLocal(t, Options{DataDir: data})
	fifo := filepath.Join(t.TempDir(), "go")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	const secret = "sup3r-s3cret-token"
	// Two printf builtins: two write() calls. Opening the FIFO blocks the
	// child between them until the test lets it go on.
	cmd := `printf 'token=sup3r-s'; read go < "$FIFO"; printf '3cret-token end\n'; printf 'last sup3r-s3cret-token'`
	info, err := l.Start(context.Background(), Spec{ID: "talker", Dir: t.TempDir(), Command: cmd,
		Env: []string{"FIFO=" + fifo}, Secrets: []string{secret, "ab"}})
	if err != nil {
		t.Fatal(err)
	}
	inst := l.get("talker")
	if inst == nil {
		t.Fatal("instance not running")
	}
	// The child opened the FIFO for reading, so its first write is done;
	// wait until the runtime has read it from the pipe.
	var w *os.File
	testenv.Eventually(t, 10*time.Second, func() error {
		f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("child not at the FIFO yet: %w", err)
		}
		w = f
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		n, err := pipeUnread(inst)
		if err == nil && n > 0 {
			err = fmt.Errorf("%d bytes not yet read", n)
		}
		return err
	})
	if _, err := w.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	x := nextExit(t, l)
	if x.Code != 0 {
		t.Fatalf("exit %+v", x)
	}
	b, err := os.ReadFile(info.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := "old line\ntoken=[redacted] end\nlast [redacted]"; string(b) != want {
		t.Errorf("log holds %q, want %q", b, want)
	}
	if strings.Contains(x.LogTail, "s3cret") {
		t.Errorf("exit log tail holds the secret: %q", x.LogTail)
	}
	for _, p := range []string{info.LogPath, info.LogPath + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), m)
		}
	}
	if fi, err := os.Stat(work); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("instance folder: %v, %v; want mode 0700", fi.Mode().Perm(), err)
	}
}

// TestRotatedLogsArePrivate checks the mode of log files made by rotation.
func TestRotatedLogsArePrivate(t *testing.T) {
	l := newLocal(t, Options{LogMaxBytes: 64, LogFiles: 3})
	info, err := l.Start(context.Background(), Spec{ID: "rot", Dir: t.TempDir(),
		Command: `for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i of some output to rotate"; done`})
	if err != nil {
		t.Fatal(err)
	}
	nextExit(t, l)
	for _, p := range []string{info.LogPath, info.LogPath + ".1", info.LogPath + ".2"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), m)
		}
	}
}
