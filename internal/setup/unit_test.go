package setup

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/shoal-dev/shoal/internal/config"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
		err  string
	}{
		{in: "ssh://root@10.0.0.7", want: Target{User: "root", Host: "10.0.0.7", Port: 22}},
		{in: "ssh://deploy@web-1.example.com:2222", want: Target{User: "deploy", Host: "web-1.example.com", Port: 2222}},
		{in: "ssh://root@[fd00::7]:22/", want: Target{User: "root", Host: "fd00::7", Port: 22}},
		{in: "root@10.0.0.7", err: "want ssh://user@host[:port]"},
		{in: "https://root@10.0.0.7", err: "want ssh://user@host[:port]"},
		{in: "ssh://10.0.0.7", err: "no user"},
		{in: "ssh://root:secret@10.0.0.7", err: "password in the URL"},
		{in: "ssh://root@", err: "no host"},
		{in: "ssh://root@10.0.0.7:0", err: "port \"0\" is not 1 to 65535"},
		{in: "ssh://root@10.0.0.7:99999", err: "is not 1 to 65535"},
		{in: "ssh://root@10.0.0.7/srv", err: "no path or query"},
		{in: "ssh://root@10.0.0.7?x=1", err: "no path or query"},
		{in: "ssh://root@10.0.0.7:x", err: "want ssh://user@host[:port]"},
	} {
		got, err := ParseTarget(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseTarget(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if got := (Target{User: "root", Host: "fd00::7"}).String(); got != "ssh://root@[fd00::7]:22" {
		t.Errorf("String = %q", got)
	}
}

func TestAuthRefusesEncryptedKeyAndNoKey(t *testing.T) {
	dir := t.TempDir()
	enc := filepath.Join(dir, "id_enc")
	writeKey(t, enc, "passphrase")
	_, _, err := auth(enc, "")
	if err == nil || !strings.Contains(err.Error(), "is encrypted with a passphrase") || !strings.Contains(err.Error(), "ssh-add "+enc) {
		t.Errorf("encrypted key: err = %v", err)
	}
	_, _, err = auth("", "")
	if err == nil || !strings.Contains(err.Error(), "no SSH key") {
		t.Errorf("no key: err = %v", err)
	}
	_, _, err = auth("", filepath.Join(dir, "no-agent.sock"))
	if err == nil || !strings.Contains(err.Error(), "SSH agent at "+filepath.Join(dir, "no-agent.sock")) {
		t.Errorf("unreachable agent: err = %v", err)
	}
	garbage := filepath.Join(dir, "garbage")
	write(t, garbage, 0o600, "not a key")
	if _, _, err = auth(garbage, ""); err == nil || !strings.Contains(err.Error(), "key file "+garbage) {
		t.Errorf("garbage key: err = %v", err)
	}
	// A key file makes an unreachable agent no error.
	plain := filepath.Join(dir, "id_plain")
	writeKey(t, plain, "")
	methods, closeAgent, err := auth(plain, filepath.Join(dir, "no-agent.sock"))
	if err != nil || len(methods) != 1 {
		t.Fatalf("key file with a dead agent: %d methods, %v", len(methods), err)
	}
	closeAgent()
}

// TestHostKeysAsksForTheKnownAlgorithm: a host with an RSA key on file is
// asked for RSA (with SHA-2 signatures), so that its ed25519 key does not
// look like a changed one.
func TestHostKeysAsksForTheKnownAlgorithm(t *testing.T) {
	dir := t.TempDir()
	ed := writeKey(t, filepath.Join(dir, "ed"), "")
	file := filepath.Join(dir, "known_hosts")
	write(t, file, 0o644, "[10.0.0.7]:2222 "+string(ssh.MarshalAuthorizedKey(ed)))
	check, algos, err := hostKeys(file, "10.0.0.7:2222")
	if err != nil {
		t.Fatal(err)
	}
	if len(algos) != 1 || algos[0] != ssh.KeyAlgoED25519 {
		t.Errorf("algorithms = %q, want ed25519 only", algos)
	}
	remote := &net.TCPAddr{IP: net.ParseIP("10.0.0.7"), Port: 2222}
	if err := check("10.0.0.7:2222", remote, ed); err != nil {
		t.Errorf("known key refused: %v", err)
	}
	other := writeKey(t, filepath.Join(dir, "other"), "")
	err = check("10.0.0.7:2222", remote, other)
	var hk *HostKeyError
	if !errors.As(err, &hk) || !hk.Changed || hk.At != file+":1" || hk.Fingerprint != ssh.FingerprintSHA256(other) {
		t.Errorf("other key: %v", err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := ssh.NewPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	write(t, file, 0o644, "10.0.0.8 "+string(ssh.MarshalAuthorizedKey(rsaPub)))
	if _, algos, _ := hostKeys(file, "10.0.0.8:22"); !slices.Equal(algos, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}) {
		t.Errorf("algorithms for an RSA host = %q", algos)
	}
	// Another port of the same host is another host.
	if _, algos, _ := hostKeys(file, "10.0.0.7:2223"); len(algos) != 0 {
		t.Errorf("algorithms for port 22 = %q, want none (unknown)", algos)
	}
	if _, _, err := hostKeys(dir, "10.0.0.7:22"); err == nil {
		t.Error("a directory as known_hosts file was accepted")
	}
}

func TestAgentYAMLIsTheAgentsSchema(t *testing.T) {
	a := config.AgentFile{Server: config.URLList{"https://10.0.0.1:7440"}, Name: "web-1", Advertise: "10.0.0.7", CPU: 2, Memory: 4 << 30, DataDir: "/srv/shoal"}
	data, err := agentYAML(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.ParseAgent(ConfigPath, data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !slices.Equal(got.Server, a.Server) || got.Name != "web-1" || got.Advertise != a.Advertise || got.CPU != 2 ||
		got.Memory != 4<<30 || got.DataDir != "/srv/shoal" || got.JoinTokenFile != TokenPath || got.Listen != config.DefaultAgentListen {
		t.Errorf("round trip: %+v\n%s", got, data)
	}
	if err := ValidateAgent(config.AgentFile{Server: config.URLList{"http://x"}, Advertise: "0.0.0.0"}); err == nil ||
		!strings.Contains(err.Error(), ConfigPath) || !strings.Contains(err.Error(), "server") || !strings.Contains(err.Error(), "advertise") {
		t.Errorf("ValidateAgent of a bad config: %v", err)
	}
	if err := ValidateAgent(config.AgentFile{Server: config.URLList{"https://10.0.0.1:7440"}, Advertise: "10.0.0.7"}); err != nil {
		t.Errorf("ValidateAgent without a name: %v", err)
	}
}

// TestUnitIsDocumented keeps the unit in docs/configuration.md the one
// setup writes.
func TestUnitIsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```ini\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 || block != Unit {
		t.Errorf("docs/configuration.md's ini block:\n%s\nwant the unit setup writes:\n%s", block, Unit)
	}
}

func TestBinaryMustBeALinuxExecutable(t *testing.T) {
	script := filepath.Join(t.TempDir(), "shoal")
	write(t, script, 0o755, "#!/bin/sh\n")
	o := Options{Binary: script, KnownHosts: "/nonexistent", Agent: config.AgentFile{Server: config.URLList{"https://10.0.0.1:7440"}, Advertise: "10.0.0.7"}}
	_, err := Run(t.Context(), Target{User: "root", Host: "127.0.0.1", Port: 1}, o, nil)
	if err == nil || !strings.Contains(err.Error(), script+" is not a Linux executable (ELF)") {
		t.Errorf("a script as the binary: %v", err)
	}
}
