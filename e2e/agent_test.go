package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/agent/agenttest"
	"github.com/shoal-dev/shoal/internal/agentclient"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/store"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// fleetServer plays the server's fleet port for `shoal agent`, made of
// the real parts: the CA, pki's join and renewal handlers over a store's
// token bucket, a hello handler that records what agents announce, and
// GET /v1/artifacts/{digest} from a release.Store, all behind
// RequireNode as the server will put them.
type fleetServer struct {
	url       string
	ca        *pki.CA
	pki       *pki.Server
	artifacts *release.Store

	mu     sync.Mutex
	hellos []helloSeen
	// refuse is how many hellos to answer 503 before taking one.
	refuse int
	// refused counts the hellos answered 503.
	refused int
}

// helloSeen is one hello: the node its certificate names, and the body.
type helloSeen struct {
	Node  string
	Hello api.AgentHello
}

func startFleetServer(t *testing.T) *fleetServer {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "shoal.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ps, err := pki.NewServer(pki.ServerConfig{CA: ca, Tokens: st.Tokens(), Nodes: &pki.MemNodes{}})
	if err != nil {
		t.Fatal(err)
	}
	arts, err := release.Open(filepath.Join(dir, "release"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleetServer{ca: ca, pki: ps, artifacts: arts}
	agentOnly := ps.RequireNode(api.RoleAgent)
	mux := http.NewServeMux()
	mux.Handle("POST /v1/join", ps)
	mux.Handle("POST /v1/renew", ps)
	mux.Handle("POST /v1/hello", agentOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h api.AgentHello
		if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, _ := pki.NodeFrom(r.Context())
		f.mu.Lock()
		if f.refused < f.refuse {
			f.refused++
			f.mu.Unlock()
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		f.hellos = append(f.hellos, helloSeen{Node: id.Name, Hello: h})
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.Handle("GET /v1/artifacts/{digest}", agentOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := r.PathValue("digest")
		if !arts.Has(d) {
			http.Error(w, "no artifact "+d, http.StatusNotFound)
			return
		}
		http.ServeFile(w, r, arts.Path(d))
	})))
	tlsCfg, err := pki.ServerTLSConfig(ca, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(tls.NewListener(ln, tlsCfg))
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	f.url = "https://" + ln.Addr().String()
	return f
}

// token makes a join token for an agent.
func (f *fleetServer) token(t *testing.T) string {
	t.Helper()
	tok, _, err := f.pki.NewToken(api.RoleAgent, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// waitHello waits for the n-th hello (from 1) and returns it.
func (f *fleetServer) waitHello(t *testing.T, n int) helloSeen {
	t.Helper()
	var h helloSeen
	testenv.Eventually(t, 30*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.hellos) < n {
			return fmt.Errorf("%d hellos, want %d", len(f.hellos), n)
		}
		h = f.hellos[n-1]
		return nil
	})
	return h
}

// put stores an artifact of files on the server and returns its digest.
func (f *fleetServer) put(t *testing.T, files map[string]string) string {
	t.Helper()
	digest, gz := agenttest.Artifact(t, files)
	a, err := f.artifacts.Put(context.Background(), bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != digest {
		t.Fatalf("stored digest %s, want %s", a.Digest, digest)
	}
	return digest
}

// tlsFor returns a client TLS configuration that trusts the fleet CA,
// expects the agent node (its certificate names only the node), and
// presents cert when given.
func (f *fleetServer) tlsFor(node string, cert *tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.Certificate())
	c := &tls.Config{RootCAs: pool, ServerName: node, MinVersion: tls.VersionTLS13}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// serverClient is the server's client of the agent at url: a certificate
// of role server issued by the fleet CA.
func (f *fleetServer) serverClient(t *testing.T, node, url string) *agentclient.Client {
	t.Helper()
	cert, err := f.ca.IssueServer([]string{"shoal-server"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := agentclient.New(url, f.tlsFor(node, &cert))
	t.Cleanup(c.HTTP.CloseIdleConnections)
	return c
}

// nodeCert issues a certificate of role for name, as a join would.
func (f *fleetServer) nodeCert(t *testing.T, name string, role api.NodeRole) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := f.ca.SignCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), pki.Identity{Name: name, Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// agentHost is one host's agent.yaml, token file and data directory.
type agentHost struct {
	name, dir, cfg, data string
}

// newAgentHost writes agent.yaml (listening on an ephemeral port of
// 127.0.0.1) and the token file, and registers a cleanup that kills every
// shim and instance the agent's runtime recorded: they outlive the agent.
func newAgentHost(t *testing.T, f *fleetServer, name, token string) *agentHost {
	t.Helper()
	dir := t.TempDir()
	h := &agentHost{name: name, dir: dir, cfg: filepath.Join(dir, "agent.yaml"), data: filepath.Join(dir, "data")}
	yaml := fmt.Sprintf("server: %s\njoin_token_file: token\nname: %s\nlisten: 127.0.0.1:0\nadvertise: 127.0.0.1\ndata_dir: data\n", f.url, name)
	if err := os.WriteFile(h.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killRecorded(t, filepath.Join(h.data, "runtime", "pids")) })
	return h
}

// killRecorded kills, with SIGKILL, the process group and the shim of
// every pid record in dir.
func killRecorded(t *testing.T, dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var rec struct {
			PGID int `json:"pgid"`
			Shim *struct {
				PID int `json:"pid"`
			} `json:"shim"`
		}
		if json.Unmarshal(b, &rec) != nil {
			continue
		}
		if rec.PGID > 1 {
			syscall.Kill(-rec.PGID, syscall.SIGKILL)
		}
		if rec.Shim != nil && rec.Shim.PID > 1 {
			syscall.Kill(rec.Shim.PID, syscall.SIGKILL)
		}
	}
}

func (h *agentHost) start(t *testing.T, bin string) *testenv.Process {
	t.Helper()
	return testenv.Start(t, bin, "agent", "-c", h.cfg)
}

var adoptedRe = regexp.MustCompile(`instance adopted.*instance=(\S+)`)

// TestAgentJoinsRunsAndAdopts runs `shoal agent` against the in-test
// server: it joins with a token and says hello; the server starts an
// instance (the artifact is fetched and verified); the agent is killed
// with SIGKILL and started again: the instance still runs with the same
// pid, is listed and adopted, and stops on request; on SIGTERM the agent
// exits 0 and its instances keep running. Only a caller with the
// server's certificate may call the agent API.
func TestAgentJoinsRunsAndAdopts(t *testing.T) {
	bin := testenv.BuildShoal(t)
	f := startFleetServer(t)
	h := newAgentHost(t, f, "host-a", f.token(t))
	ctx := testenv.Context(t, 2*time.Minute)

	p := h.start(t, bin)
	hello := f.waitHello(t, 1)
	if hello.Node != "host-a" || !strings.HasPrefix(hello.Hello.URL, "https://127.0.0.1:") || hello.Hello.Epoch == "" ||
		hello.Hello.CPU <= 0 || hello.Hello.MemoryBytes <= 0 {
		t.Fatalf("hello = %+v", hello)
	}
	for _, name := range []string{"node.key", "node.crt", "ca.crt"} {
		if _, err := os.Stat(filepath.Join(h.data, "pki", name)); err != nil {
			t.Fatalf("after the join: %v", err)
		}
	}
	c := f.serverClient(t, "host-a", hello.Hello.URL)

	// Only the server may call the agent.
	noCert := agentclient.New(hello.Hello.URL, f.tlsFor("host-a", nil))
	defer noCert.HTTP.CloseIdleConnections()
	if _, err := noCert.List(ctx); err == nil {
		t.Fatal("a client without a certificate listed the instances")
	}
	other := f.nodeCert(t, "host-b", api.RoleAgent)
	asAgent := agentclient.New(hello.Hello.URL, f.tlsFor("host-a", &other))
	defer asAgent.HTTP.CloseIdleConnections()
	var se *agentclient.StatusError
	if _, err := asAgent.List(ctx); !errors.As(err, &se) || se.Status != http.StatusForbidden {
		t.Fatalf("a client with an agent's certificate: %v, want 403", err)
	}

	digest := f.put(t, map[string]string{"run.sh": "exec sleep 300\n"})
	spec := api.LaunchSpec{ID: "web-1", App: "web", Release: 1, Digest: digest, Command: "sh run.sh", StopTimeoutMS: 2000}
	info, err := c.Start(ctx, 1, spec)
	if err != nil {
		t.Fatal(err)
	}
	if info.PID <= 0 || !alive(info.PID) {
		t.Fatalf("started %+v: not running", info)
	}

	// kill -9: the instance outlives the agent, and the next run adopts it.
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !alive(info.PID) {
		t.Fatal("the instance died with the agent")
	}
	p = h.start(t, bin)
	hello = f.waitHello(t, 2)
	if _, err := p.WaitForLine(ctx, adoptedRe); err != nil {
		t.Fatal(err)
	}
	c = f.serverClient(t, "host-a", hello.Hello.URL)
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Instances) != 1 || list.Instances[0].ID != "web-1" || list.Instances[0].PID != info.PID {
		t.Fatalf("after the restart: %+v, want web-1 with pid %d", list.Instances, info.PID)
	}
	if err := c.Stop(ctx, 1, "web-1"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if alive(info.PID) {
			return fmt.Errorf("pid %d still runs", info.PID)
		}
		return nil
	})

	// SIGTERM: exit 0, the instances keep running.
	spec.ID = "web-2"
	info2, err := c.Start(ctx, 1, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("after SIGTERM: exit %d, %v; want 0", code, err)
	}
	if !strings.Contains(p.Output(), "instances keep running") {
		t.Fatalf("the log does not say the instances keep running:\n%s", p.Output())
	}
	if !alive(info2.PID) {
		t.Fatal("SIGTERM of the agent stopped its instance")
	}
}

// TestAgentJoinRefused: a used token and a wrong one are refused; the agent
// exits 1 with the server's refusal and writes no certificate.
func TestAgentJoinRefused(t *testing.T) {
	bin := testenv.BuildShoal(t)
	f := startFleetServer(t)
	ctx := testenv.Context(t, time.Minute)

	used := f.token(t)
	if _, err := pki.Join(ctx, f.url, used, "first", filepath.Join(t.TempDir(), "pki")); err != nil {
		t.Fatal(err)
	}
	good := f.token(t)
	// The right id with another secret of the same length.
	parts := strings.Split(good, ".")
	if len(parts) != 4 {
		t.Fatalf("token %q: want 4 fields", good)
	}
	parts[2] = strings.Repeat("A", len(parts[2]))
	wrong := strings.Join(parts, ".")
	for name, tok := range map[string]string{"used": used, "wrong": wrong} {
		t.Run(name, func(t *testing.T) {
			h := newAgentHost(t, f, "host-"+name, tok)
			p := h.start(t, bin)
			code, err := p.Wait(ctx)
			if err != nil || code != 1 {
				t.Fatalf("exit %d, %v; want 1", code, err)
			}
			if out := p.Output(); !strings.Contains(out, "join refused") {
				t.Fatalf("the output does not name the refusal:\n%s", out)
			}
			if _, err := os.Stat(filepath.Join(h.data, "pki", "node.crt")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("node.crt after a refused join: %v", err)
			}
		})
	}
}

var agentListenRe = regexp.MustCompile(`msg=listening listener=agent addr=(\S+)`)

// TestAgentServesWhileHelloFails: the server refuses the first hello; the
// agent serves its API meanwhile and says hello again until it is taken.
func TestAgentServesWhileHelloFails(t *testing.T) {
	bin := testenv.BuildShoal(t)
	f := startFleetServer(t)
	f.mu.Lock()
	f.refuse = 1
	f.mu.Unlock()
	h := newAgentHost(t, f, "host-a", f.token(t))
	ctx := testenv.Context(t, time.Minute)

	p := h.start(t, bin)
	if _, err := p.WaitForLine(ctx, regexp.MustCompile(`hello failed`)); err != nil {
		t.Fatal(err)
	}
	m, err := p.WaitForLine(ctx, agentListenRe)
	if err != nil {
		t.Fatal(err)
	}
	c := f.serverClient(t, "host-a", "https://"+m[1])
	host, err := c.Host(ctx)
	if err != nil {
		t.Fatalf("the agent does not serve while its hello fails: %v", err)
	}
	if host.Name != "host-a" {
		t.Fatalf("host = %+v", host)
	}
	hello := f.waitHello(t, 1)
	if hello.Hello.URL != "https://"+m[1] || hello.Hello.Epoch != host.Epoch {
		t.Fatalf("hello %+v, want url https://%s and epoch %s", hello.Hello, m[1], host.Epoch)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("after SIGTERM: exit %d, %v; want 0", code, err)
	}
}
