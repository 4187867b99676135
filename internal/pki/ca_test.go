package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCACreatedOnceThenLoaded(t *testing.T) {
	clock := newClock()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := LoadOrCreateCA(dir, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{dir: 0o700, filepath.Join(dir, "ca.key"): 0o600, filepath.Join(dir, "ca.crt"): 0o644} {
		if got := mode(t, path); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	c := ca.Certificate()
	if !c.IsCA || !regexp.MustCompile(`^Shoal fleet CA [0-9a-f]{8}$`).MatchString(c.Subject.CommonName) ||
		c.NotAfter.Sub(clock.Now()) != CALifetime || c.SerialNumber.Sign() <= 0 {
		t.Fatalf("CA certificate: CN %q, CA %v, not after %s, serial %s", c.Subject.CommonName, c.IsCA, c.NotAfter, c.SerialNumber)
	}
	// The pin, computed another way: SHA-256 of the DER public key.
	spki, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	if want := "sha256:" + hex.EncodeToString(sum[:]); ca.Pin() != want {
		t.Fatalf("pin %s, want %s", ca.Pin(), want)
	}

	again, err := LoadOrCreateCA(dir, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if again.Pin() != ca.Pin() || again.Certificate().SerialNumber.Cmp(c.SerialNumber) != 0 {
		t.Fatalf("the second start made another CA: pin %s, want %s", again.Pin(), ca.Pin())
	}
	other, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Pin() == ca.Pin() || other.Certificate().Subject.CommonName == c.Subject.CommonName {
		t.Fatal("two CAs share a pin or a name")
	}
}

func TestDamagedCAFilesRefusedByName(t *testing.T) {
	otherKey := func(t *testing.T) []byte {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	cases := []struct {
		name   string
		file   string // the file the error must name: "ca.key", "ca.crt" or "" (the directory)
		damage func(t *testing.T, dir, key, crt string)
		want   string
	}{
		{"key truncated", "ca.key", func(t *testing.T, _, key, _ string) { truncate(t, key) }, "no PEM block"},
		{"key empty", "ca.key", func(t *testing.T, _, key, _ string) { write(t, key, nil, 0o600) }, "empty"},
		{"key garbage in PEM", "ca.key", func(t *testing.T, _, key, _ string) {
			write(t, key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), 0o600)
		}, "not a PKCS#8"},
		{"key mismatched", "ca.key", func(t *testing.T, _, key, _ string) { write(t, key, otherKey(t), 0o600) }, "does not match"},
		{"key readable by others", "ca.key", func(t *testing.T, _, key, _ string) { chmod(t, key, 0o644) }, "mode 0644"},
		{"key missing", "ca.key", func(t *testing.T, _, key, _ string) { remove(t, key) }, "missing"},
		{"cert truncated", "ca.crt", func(t *testing.T, _, _, crt string) { truncate(t, crt) }, "no PEM block"},
		{"cert bit flipped", "ca.crt", func(t *testing.T, _, _, crt string) { flipInPEM(t, crt) }, "ca.crt"},
		{"cert with a second block", "ca.crt", func(t *testing.T, _, _, crt string) {
			b, _ := os.ReadFile(crt)
			write(t, crt, append(b, b...), 0o644)
		}, "data after"},
		{"cert missing", "ca.crt", func(t *testing.T, _, _, crt string) { remove(t, crt) }, "missing"},
		{"directory open to others", "", func(t *testing.T, dir, _, _ string) { chmod(t, dir, 0o755) }, "mode 0755"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if _, err := LoadOrCreateCA(dir); err != nil {
				t.Fatal(err)
			}
			key, crt := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
			tc.damage(t, dir, key, crt)
			before := snapshot(t, dir)
			_, err := LoadOrCreateCA(dir)
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FileError", err)
			}
			want := dir
			if tc.file != "" {
				want = filepath.Join(dir, tc.file)
			}
			if fe.Path != want || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (path %s); want one naming %s and saying %q", err, fe.Path, want, tc.want)
			}
			if after := snapshot(t, dir); after != before {
				t.Fatalf("the refused CA directory changed:\n%s\nwas\n%s", after, before)
			}
		})
	}
}

// snapshot describes the files of dir: names, modes, contents' hashes.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		data, _ := os.ReadFile(p)
		sum := sha256.Sum256(data)
		b.WriteString(e.Name() + " " + mode(t, p).String() + " " + hex.EncodeToString(sum[:4]) + "\n")
	}
	return b.String()
}

func write(t *testing.T, path string, data []byte, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, perm)
}

func chmod(t *testing.T, path string, perm fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// truncate cuts path to its first 40 bytes, inside the PEM header's line.
func truncate(t *testing.T, path string) {
	t.Helper()
	if err := os.Truncate(path, 40); err != nil {
		t.Fatal(err)
	}
}

// flipInPEM changes one base64 character in the middle of path's PEM body,
// so the block still decodes but its DER does not.
func flipInPEM(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	block.Bytes = block.Bytes[:len(block.Bytes)/2]
	write(t, path, pem.EncodeToMemory(block), 0o644)
}

func csrFor(t *testing.T, name string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := makeCSR(k, name)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestSignCSR(t *testing.T) {
	clock := newClock()
	ca, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "pki"), WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	out, err := ca.SignCSR(csrFor(t, "web-1.dc1"), Identity{Name: "web-1.dc1", Role: api.RoleLB}, 0)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(out)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "web-1.dc1" || !slices.Equal(cert.Subject.OrganizationalUnit, []string{"lb"}) ||
		!slices.Equal(cert.DNSNames, []string{"web-1.dc1"}) || cert.NotAfter.Sub(clock.Now()) != DefaultNodeTTL || cert.IsCA ||
		!slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}) {
		t.Fatalf("signed: CN %q OU %q DNS %q not after %s EKU %v", cert.Subject.CommonName, cert.Subject.OrganizationalUnit,
			cert.DNSNames, cert.NotAfter, cert.ExtKeyUsage)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.pool, CurrentTime: clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("signed certificate does not verify: %v", err)
	}
	if id, err := IdentityOf(cert); err != nil || id != (Identity{Name: "web-1.dc1", Role: api.RoleLB}) {
		t.Fatalf("IdentityOf = %+v, %v", id, err)
	}

	good := csrFor(t, "web-1")
	tampered := func() []byte {
		block, _ := pem.Decode(good)
		block.Bytes[len(block.Bytes)-5] ^= 0xff // inside the signature
		return pem.EncodeToMemory(block)
	}()
	rsaLike := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")})
	refusals := []struct {
		name string
		csr  []byte
		id   Identity
		want string
	}{
		{"bad signature", tampered, Identity{"web-1", api.RoleAgent}, "signature"},
		{"name differs", good, Identity{"web-2", api.RoleAgent}, `names "web-1", not "web-2"`},
		{"server role", good, Identity{"web-1", api.RoleServer}, "not agent or lb"},
		{"no role", good, Identity{"web-1", ""}, "not agent or lb"},
		{"not a CSR", rsaLike, Identity{"web-1", api.RoleAgent}, "want \"CERTIFICATE REQUEST\""},
		{"upper case", csrFor(t, "Web-1"), Identity{"Web-1", api.RoleAgent}, "character 'W'"},
		{"underscore", csrFor(t, "web_1"), Identity{"web_1", api.RoleAgent}, "character '_'"},
		{"empty", csrFor(t, ""), Identity{"", api.RoleAgent}, "0 characters"},
		{"too long", csrFor(t, strings.Repeat("a", 64)), Identity{strings.Repeat("a", 64), api.RoleAgent}, "64 characters"},
		{"leading dash", csrFor(t, "-web"), Identity{"-web", api.RoleAgent}, "start and end"},
		{"trailing dot", csrFor(t, "web."), Identity{"web.", api.RoleAgent}, "start and end"},
	}
	for _, tc := range refusals {
		if _, err := ca.SignCSR(tc.csr, tc.id, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := ca.SignCSR(csrFor(t, strings.Repeat("a", 63)), Identity{strings.Repeat("a", 63), api.RoleAgent}, time.Hour); err != nil {
		t.Errorf("63-character name refused: %v", err)
	}
}

func TestIssueServerChainsToTheCA(t *testing.T) {
	ca, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.IssueServer([]string{"fleet.example", "127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 || !bytes.Equal(c.Certificate[1], ca.Certificate().Raw) {
		t.Fatal("the chain does not end with the CA certificate")
	}
	for _, host := range []string{"fleet.example", "127.0.0.1"} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.pool, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if id, err := IdentityOf(c.Leaf); err != nil || id.Role != api.RoleServer {
		t.Fatalf("server identity %+v, %v", id, err)
	}
	if _, err := ca.IssueServer(nil, 0); err == nil {
		t.Error("no names accepted")
	}
	if _, err := ca.IssueServer([]string{"Bad_Name"}, 0); err == nil {
		t.Error("a bad DNS name accepted")
	}
}
