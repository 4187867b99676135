package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/pki"
)

// agentConfig returns an agent.yaml, as loaded, for a host that has not
// joined, with its token file (not written) and data dir in a temp dir.
func agentConfig(t *testing.T, listen string) *config.AgentFile {
	t.Helper()
	dir := t.TempDir()
	yaml := "server: https://127.0.0.1:1\njoin_token_file: token\nname: host-a\nlisten: " + listen +
		"\nadvertise: 127.0.0.1\ndata_dir: data\n"
	cfg, err := config.ParseAgent(filepath.Join(dir, "agent.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestOpenAgentWithoutTokenNamesTheFile(t *testing.T) {
	cfg := agentConfig(t, "127.0.0.1:0")
	for _, content := range []*string{nil, new(string)} {
		if content != nil {
			if err := os.WriteFile(cfg.JoinTokenFile, []byte(" \n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, err := OpenAgent(context.Background(), cfg, nil)
		if err == nil || !strings.Contains(err.Error(), cfg.JoinTokenFile) || !strings.Contains(err.Error(), "shoal setup") ||
			!strings.Contains(err.Error(), "shoal join-token") {
			t.Fatalf("OpenAgent without a token: %v; want the file and what to do", err)
		}
	}
	fi, err := os.Stat(cfg.DataDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v, %v; want mode 0700", fi, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "pki", "node.crt")); err == nil {
		t.Fatal("a certificate was written without a join")
	}
}

func TestOpenAgentPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := agentConfig(t, ln.Addr().String())
	// The token file exists: a join would be tried (and spend it) if the
	// listener were bound after it.
	if err := os.WriteFile(cfg.JoinTokenFile, []byte("shoal-join-v1.a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenAgent(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "agent listen") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("OpenAgent on a port in use: %v", err)
	}
}

func TestRequireServer(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.IssueServer([]string{"shoal-server"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "host-b"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	agentPEM, err := ca.SignCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), pki.Identity{Name: "host-b", Role: api.RoleAgent}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(agentPEM)
	agentLeaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	h := requireServer(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for _, tc := range []struct {
		name  string
		state *tls.ConnectionState
		want  int
	}{
		{"no TLS", nil, http.StatusUnauthorized},
		{"no certificate", &tls.ConnectionState{}, http.StatusUnauthorized},
		{"agent", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{agentLeaf, ca.Certificate()}}}, http.StatusForbidden},
		{"server", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{server.Leaf, ca.Certificate()}}}, http.StatusTeapot},
	} {
		r := httptest.NewRequest(http.MethodGet, "/v1/instances", nil)
		r.TLS = tc.state
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
		}
	}
}
