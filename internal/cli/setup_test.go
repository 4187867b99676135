package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestSetupUsageErrorsExit2 checks that shoal setup refuses bad arguments
// with exit 2, before connecting anywhere.
func TestSetupUsageErrorsExit2(t *testing.T) {
	ok := []string{"--server", "https://10.0.0.1:7440", "--advertise", "10.0.0.7"}
	lbOK := []string{"setup", "ssh://root@10.0.0.7", "--lb", "--server", "https://10.0.0.1:7443", "--lb-listen", "http=:80"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"setup"}, "setup takes one host"},
		{append([]string{"setup", "root@10.0.0.7"}, ok...), "want ssh://user@host[:port]"},
		{[]string{"setup", "ssh://root@10.0.0.7"}, "setup needs --server and --advertise"},
		{[]string{"setup", "ssh://root@10.0.0.7", "--server", "https://10.0.0.1:7440"}, "setup needs --advertise"},
		{append([]string{"setup", "ssh://root@10.0.0.7", "--token", "a", "--token-file", "f"}, ok...), "--token or --token-file, not both"},
		{append([]string{"setup", "ssh://root@10.0.0.7", "--token-file", filepath.Join(t.TempDir(), "none")}, ok...), "--token-file: open"},
		{append([]string{"setup", "ssh://root@10.0.0.7", "--name", "Web_1"}, ok...), `--name: "Web_1" is not a valid name`},
		{append([]string{"setup", "ssh://root@10.0.0.7", "--memory", "lots"}, ok...), `--memory: invalid size "lots"`},
		{[]string{"setup", "ssh://root@10.0.0.7", "--server", "http://10.0.0.1", "--advertise", "0.0.0.0"}, "--server: must be an https URL"},
		{[]string{"setup", "ssh://root@10.0.0.7", "--lb", "--server", "https://10.0.0.1:7443"}, "setup needs --lb-listen"},
		{append([]string{"setup", "ssh://root@10.0.0.7", "--lb-listen", "http=:80"}, ok...), "--lb-listen needs --lb"},
		{append(lbOK, "--advertise", "10.0.0.7"), "--advertise is the agent's"},
		{[]string{"setup", "ssh://root@10.0.0.7", "--lb", "--server", "https://10.0.0.1:7443", "--lb-listen", "http"}, "want name=host:port[,acme]"},
		{[]string{"setup", "ssh://root@10.0.0.7", "--lb", "--server", "https://10.0.0.1:7443", "--lb-listen", "https=:443,tls"}, `unknown option "tls"`},
		{append(lbOK, "--lb-listen", "http=:81"), `--lb-listen #2 (name): duplicate listener name "http"`},
		{[]string{"setup", "ssh://root@10.0.0.7", "--lb", "--server", "http://10.0.0.1", "--lb-listen", "http=:80"}, "--server: must be an https URL"},
	} {
		code, out, errs := runCLI(t, tt.args...)
		if code != ExitUsage || !strings.Contains(errs, tt.want) {
			t.Errorf("shoal %s: exit %d, want 2 and %q on stderr:\n%s%s", strings.Join(tt.args, " "), code, tt.want, errs, out)
		}
	}
}

// TestSetupUnreachableHostExits1: a host that does not answer is a
// failure (exit 1) that names its address.
func TestSetupUnreachableHostExits1(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	key := filepath.Join(dir, "id")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(known, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "setup", "ssh://root@"+addr, "--server", "https://10.0.0.1:7440", "--advertise", "10.0.0.7",
		"--token", "t", "-i", key, "--known-hosts", known)
	if code != ExitFailure || !strings.Contains(errs, "connect to "+addr) {
		t.Errorf("exit %d, want 1 and %q on stderr:\n%s%s", code, "connect to "+addr, errs, out)
	}
}
