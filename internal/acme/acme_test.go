package acme

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestRenewalDecision(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &Cert{NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour)}
	if got, want := c.RenewAt(), nb.Add(60*24*time.Hour); !got.Equal(want) {
		t.Fatalf("RenewAt = %v, want %v (2/3 of 90 days)", got, want)
	}
	for _, tc := range []struct {
		c    *Cert
		now  time.Time
		want bool
	}{
		{nil, nb, true},
		{c, nb, false},
		{c, nb.Add(60*24*time.Hour - time.Second), false},
		{c, nb.Add(60 * 24 * time.Hour), true},
		{c, nb.Add(100 * 24 * time.Hour), true}, // expired
	} {
		if got := due(tc.c, tc.now); got != tc.want {
			t.Errorf("due(%v, %v) = %v, want %v", tc.c != nil, tc.now, got, tc.want)
		}
	}
}

func noPublish(context.Context, map[string]string) error { return nil }

// TestStorageRefusesDamage: every damaged or loosely permissioned file is
// refused by name at Open; nothing is overwritten.
func TestStorageRefusesDamage(t *testing.T) {
	open := func(base string) error {
		_, err := Open(Config{Directory: "https://ca.test/dir", Hosts: []string{"a.test"}, Dir: base, Publish: noPublish})
		return err
	}
	sub := func(base string) string { return filepath.Join(base, "ca.test") }
	base := t.TempDir()
	if err := open(base); err != nil {
		t.Fatalf("first open: %v", err)
	}
	key, err := os.ReadFile(filepath.Join(sub(base), "account.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(sub(base), "account.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("account.key mode %04o, want 0600", fi.Mode().Perm())
	}
	if err := open(base); err != nil {
		t.Fatalf("second open: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(sub(base), "account.key")); string(again) != string(key) {
		t.Fatal("the account key changed at the second open")
	}
	certPEM, keyPEM := selfSigned(t, "a.test")
	_, otherKey := selfSigned(t, "a.test")
	otherCert, _ := selfSigned(t, "b.test")
	for _, tc := range []struct {
		name, file string
		data       []byte
		mode       os.FileMode
		want       string
	}{
		{"account key garbage", "account.key", []byte("garbage"), 0o600, "account.key"},
		{"account key truncated", "account.key", key[:len(key)/2], 0o600, "account.key"},
		{"account key readable by others", "account.key", key, 0o644, "want 0600"},
		{"certificate truncated", "a.test.pem", append(append([]byte{}, certPEM...), keyPEM[:20]...), 0o600, "a.test.pem"},
		{"certificate without key", "a.test.pem", certPEM, 0o600, "a.test.pem"},
		{"key of another certificate", "a.test.pem", append(append([]byte{}, certPEM...), otherKey...), 0o600, "a.test.pem"},
		{"certificate of another host", "a.test.pem", append(append([]byte{}, otherCert...), keyPEM...), 0o600, "a.test.pem"},
		{"certificate readable by others", "a.test.pem", append(append([]byte{}, certPEM...), keyPEM...), 0o640, "want 0600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := t.TempDir()
			if err := open(b); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(sub(b), tc.file)
			if err := os.WriteFile(p, tc.data, tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			err := open(b)
			var de *DamagedError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) || de.File != p {
				t.Fatalf("Open: %v, want a DamagedError naming %s (%s)", err, p, tc.want)
			}
			if got, _ := os.ReadFile(p); string(got) != string(tc.data) {
				t.Error("the damaged file was changed")
			}
		})
	}
	good := t.TempDir()
	if err := open(good); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub(good), "a.test.pem"), append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []Cert
	m, err := Open(Config{Directory: "https://ca.test/dir", Hosts: []string{"a.test"}, Dir: good, Publish: noPublish,
		OnCertificates: func(cs []Cert) { got = cs }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Names[0] != "a.test" || len(m.Certificates()) != 1 {
		t.Fatalf("a sound certificate was not loaded: %v", got)
	}
	// A host added later whose file is damaged is left out, its file
	// kept as it was.
	bad := filepath.Join(sub(good), "b.test.pem")
	if err := os.WriteFile(bad, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.SetHosts([]string{"b.test", "a.test", "c.test"})
	if h := m.Hosts(); strings.Join(h, ",") != "a.test,c.test" {
		t.Fatalf("hosts %v, want a.test,c.test (b.test's file is damaged)", h)
	}
	if b, _ := os.ReadFile(bad); string(b) != "junk" {
		t.Fatal("the damaged file was changed")
	}
	if len(got) != 1 || len(m.Certificates()) != 1 {
		t.Fatalf("certificates after SetHosts: %d", len(got))
	}
}

func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	dir := t.TempDir()
	cf, kf, _ := testenv.WriteSelfSigned(t, dir, name)
	c, _ := os.ReadFile(cf)
	k, _ := os.ReadFile(kf)
	return c, k
}

// TestObtainFromPebble: a certificate for a.shoal.test from pebble, whose
// HTTP-01 validation is answered by a server that knows only what Publish
// gave it; its chain ends at pebble's root; a second manager on the same
// directory serves it from disk without asking again.
func TestObtainFromPebble(t *testing.T) {
	var mu sync.Mutex
	tokens := map[string]string{}
	asked := 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ka, ok := tokens[strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")]
		asked++
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(ka))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	peb := testenv.StartPebble(t, ln.Addr().(*net.TCPAddr).Port)

	dir := t.TempDir()
	got := make(chan []Cert, 16)
	cfg := Config{Directory: peb.Directory, Email: "ops@shoal.test", Roots: peb.Roots, Hosts: []string{"a.shoal.test"}, Dir: dir,
		Publish: func(_ context.Context, set map[string]string) error {
			mu.Lock()
			tokens = set
			mu.Unlock()
			return nil
		},
		OnCertificates: func(cs []Cert) { got <- cs }}
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cs := <-got; len(cs) != 0 {
		t.Fatalf("certificates before any was obtained: %d", len(cs))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- m.Run(ctx) }()
	var cs []Cert
	select {
	case cs = <-got:
	case <-time.After(60 * time.Second):
		t.Fatal("no certificate from pebble within 60 s")
	}
	t.Logf("certificate from pebble in %s", time.Since(start).Round(time.Millisecond))

	// A host added while Run runs is obtained; a host removed is no
	// longer served.
	m.SetHosts([]string{"b.shoal.test", "a.shoal.test"})
	for more := true; more; {
		select {
		case cs2 := <-got:
			more = len(cs2) != 2
		case <-time.After(60 * time.Second):
			t.Fatal("no certificate for the added host within 60 s")
		}
	}
	m.SetHosts([]string{"b.shoal.test"})
	if c := m.Certificates(); len(c) != 1 || c[0].Names[0] != "b.shoal.test" {
		t.Fatalf("after removing a.shoal.test: %d certificates", len(c))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	if asked == 0 || len(tokens) != 0 {
		t.Errorf("validation requests %d (want some), tokens left pending %d (want none)", asked, len(tokens))
	}
	mu.Unlock()
	if len(cs) != 1 {
		t.Fatalf("%d certificates, want 1", len(cs))
	}
	rootPEM, err := peb.Root(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("pebble's root does not parse")
	}
	var chain []*x509.Certificate
	for rest := cs[0].CertPEM; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: "a.shoal.test", Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("the certificate does not chain to pebble's root: %v", err)
	}
	fi, err := os.Stat(filepath.Join(m.dir, "a.shoal.test.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("certificate file: %v, mode %v; want 0600", err, fi)
	}

	m2, err := Open(Config{Directory: peb.Directory, Roots: peb.Roots, Hosts: []string{"a.shoal.test"}, Dir: dir, Publish: noPublish})
	if err != nil {
		t.Fatal(err)
	}
	if c2 := m2.Certificates(); len(c2) != 1 || string(c2[0].CertPEM) != string(cs[0].CertPEM) {
		t.Fatal("the second manager did not load the certificate from disk")
	}
}
