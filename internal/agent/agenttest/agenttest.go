// Package agenttest is test support for package agent and its client,
// package agentclient: a throwaway CA with mutual-TLS configurations made
// with crypto/x509, artifacts built from a few files, a server of artifacts,
// a real agent served over HTTPS on 127.0.0.1 with a real runtime, and the
// program its instances run (the test binary itself, see MaybeServe). Only
// tests import it (internal/archtest).
package agenttest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agentclient"
)

// ServeEnv is the variable that makes the test binary the instance program:
// an HTTP server on $HOST:$PORT (see MaybeServe).
const ServeEnv = "AGENTTEST_SERVE"

// MaybeServe runs the instance program and exits when ServeEnv is set; call
// it first in TestMain. The program serves GET / with a JSON object of its
// HOST, PORT, SHOAL_INSTANCE_ID and the content of version.txt in its
// working directory (the unpacked artifact), prints "serving <version>" once
// it listens (after "secret $SECRET" when SECRET is set) and "request
// <path>" for each request, and exits 0 on SIGTERM
// after printing "bye".
func MaybeServe() {
	if os.Getenv(ServeEnv) == "" {
		return
	}
	os.Exit(serve())
}

func serve() int {
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("HOST"), os.Getenv("PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	version, _ := os.ReadFile("version.txt")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("request", r.URL.Path)
		json.NewEncoder(w).Encode(map[string]string{
			"host": os.Getenv("HOST"), "port": os.Getenv("PORT"), "id": os.Getenv("SHOAL_INSTANCE_ID"),
			"version": strings.TrimSpace(string(version)), "secret": os.Getenv("SECRET"),
		})
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go srv.Serve(ln)
	if s := os.Getenv("SECRET"); s != "" {
		fmt.Println("secret", s)
	}
	fmt.Println("serving", strings.TrimSpace(string(version)))
	<-ctx.Done()
	srv.Shutdown(context.Background())
	fmt.Println("bye")
	return 0
}

// CA is a throwaway certificate authority for one test.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

// NewCA creates a CA valid for an hour.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "agenttest CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: key, pool: pool}
}

var serial atomic.Int64

// issue signs a certificate for name (an IP SAN of 127.0.0.1 for a server).
func (ca *CA) issue(t testing.TB, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// ServerTLS is the agent's listener configuration: its certificate for
// 127.0.0.1, and a client certificate of this CA required.
func (ca *CA) ServerTLS(t testing.TB) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "agent", x509.ExtKeyUsageServerAuth)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
		MinVersion:   tls.VersionTLS13,
	}
}

// ClientTLS is the server's configuration toward agents: its client
// certificate, and agents' certificates checked against this CA.
func (ca *CA) ClientTLS(t testing.TB) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "server", x509.ExtKeyUsageClientAuth)},
		RootCAs:      ca.pool,
		MinVersion:   tls.VersionTLS13,
	}
}

// NoCertTLS trusts the CA but offers no client certificate.
func (ca *CA) NoCertTLS() *tls.Config {
	return &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
}

// Artifact packs files (name -> content, mode 0644) into a .tar.gz and
// returns its digest as package release computes it (sha256 of the tar
// stream) and its bytes.
func Artifact(t testing.TB, files map[string]string) (string, []byte) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(files[n])),
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tb.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(sum[:]), gz.Bytes()
}

// Artifacts serves GET /v1/artifacts/{digest} over HTTPS with the CA's
// server certificate, as the server's admin API will, from what Set gave
// it (any bytes under any digest, to test the agent's verification), and
// counts the fetches of each digest.
type Artifacts struct {
	URL string

	mu      sync.Mutex
	blobs   map[string][]byte
	fetches map[string]int
	gate    chan struct{} // when set, each fetch waits for it to close
}

// NewArtifacts starts an artifact server, closed by t.Cleanup.
func NewArtifacts(t testing.TB, ca *CA) *Artifacts {
	t.Helper()
	a := &Artifacts{blobs: map[string][]byte{}, fetches: map[string]int{}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ca.ServerTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/artifacts/{digest}", func(w http.ResponseWriter, r *http.Request) {
		d := r.PathValue("digest")
		a.mu.Lock()
		b, ok := a.blobs[d]
		a.fetches[d]++
		gate := a.gate
		a.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if !ok {
			http.Error(w, "no artifact "+d, http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a.URL = "https://" + ln.Addr().String()
	return a
}

// Set makes the server answer b for digest.
func (a *Artifacts) Set(digest string, b []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.blobs[digest] = b
}

// Hold makes every fetch wait until the returned function is called.
func (a *Artifacts) Hold() (release func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := make(chan struct{})
	a.gate = g
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.gate = nil
			a.mu.Unlock()
			close(g)
		})
	}
}

// Fetches returns how many times digest was asked for.
func (a *Artifacts) Fetches(digest string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fetches[digest]
}

// Fixture is one agent over HTTPS with an artifact holding version.txt "v1"
// served to it, for the tests of the agent and of its client.
type Fixture struct {
	CA        *CA
	Artifacts *Artifacts
	Agent     *Agent
	Client    *agentclient.Client
	// Digest is the served artifact's.
	Digest string
}

// NewFixture starts a Fixture's agent with opts; t's cleanup ends it.
func NewFixture(t *testing.T, opts Options) *Fixture {
	t.Helper()
	f := &Fixture{CA: NewCA(t)}
	f.Artifacts = NewArtifacts(t, f.CA)
	var tgz []byte
	f.Digest, tgz = Artifact(t, map[string]string{"version.txt": "v1\n"})
	f.Artifacts.Set(f.Digest, tgz)
	f.Agent = Start(t, f.CA, f.Artifacts, opts)
	f.Client = f.Agent.Client()
	return f
}
