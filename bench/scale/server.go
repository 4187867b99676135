package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/release"
)

// scenario is the fleet and the apps to run on it.
type scenario struct {
	Hosts, Zones   int
	Apps, PerApp   int
	MaxReplacing   int
	HealthInterval time.Duration
	HeartbeatEvery time.Duration
	LostAfter      time.Duration
	StartGrace     time.Duration // fleet.start_grace
	// Servers is how many servers hold the state: 1 is one `shoal
	// server`, more a Raft cluster of that many (cluster.go).
	Servers int
	// ElectionTimeout is the cluster's cluster.election_timeout (zero:
	// its default), composed into raft's timeouts as shoal server does.
	ElectionTimeout time.Duration
	// HostCPU and HostMemory are each host's capacity as its hello
	// declares it (shown in its status; the apps declare no run.cpu or
	// run.memory, which this shoal.yaml does not have yet).
	HostCPU    float64
	HostMemory int64
	Logger     *slog.Logger `json:"-"`
	// OnTerm, when set, is told when a replica's term begins and ends.
	OnTerm func(id string, n uint64, begun bool) `json:"-"`
}

// serverSide is what `shoal server` runs for a fleet, composed here in
// process from the real parts: the fleet CA and its join server's node
// list, one listener for the fleet's port (hello and artifacts), and one
// replica per server (cluster.go): with -servers 1 a store alone, as one
// `shoal server`; with more, a Raft cluster (cluster.Node over mutual TLS
// on 127.0.0.1, each with its own store and data dir). Whichever replica
// leads runs a term (term.go): fleet.Fleet and one controller.Controller
// per app whose Host is the fleet's, writing through its replica's writer.
type serverSide struct {
	sc    scenario
	dir   string
	ca    *pki.CA
	nodes *pki.MemNodes
	pki   *pki.Server
	url   string

	hs     *http.Server
	served chan struct{}

	replicas []*replica
	// created is set by startApps: every term from then on runs the apps.
	mu      sync.Mutex
	created bool
	cur     *term        // the leading replica's; nil between terms
	terms   atomic.Int64 // terms begun, every replica
	// pastPasses is the reconcile passes of the terms that ended.
	pastPasses hist
}

// appRun is one app's controller, running.
type appRun struct {
	name string
	ctl  *controller.Controller
	arts *release.Store
	stop context.CancelFunc
	done chan error
}

// newServerSide opens the CA and sc.Servers replicas under dir (with only
// >= 0, replica only alone: a server's process, servers.go) and serves
// the fleet's port on 127.0.0.1; the replica that leads starts its term
// (the fleet) at once.
func newServerSide(dir string, sc scenario, only int) (_ *serverSide, err error) {
	if sc.Logger == nil {
		sc.Logger = slog.New(slog.DiscardHandler)
	}
	s := &serverSide{sc: sc, dir: dir, nodes: &pki.MemNodes{}}
	if s.ca, err = pki.LoadOrCreateCA(filepath.Join(dir, "ca")); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.closeReplicas()
		}
	}()
	if err := s.openReplicas(only); err != nil {
		return nil, err
	}
	if s.pki, err = pki.NewServer(pki.ServerConfig{CA: s.ca, Tokens: s.replicas[0].store.Tokens(), Nodes: s.nodes}); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/hello", http.HandlerFunc(s.hello))
	mux.Handle("GET /v1/artifacts/{digest}", s.pki.RequireNode(api.RoleAgent)(http.HandlerFunc(s.artifact)))
	tlsCfg, err := pki.ServerTLSConfig(s.ca, []string{"127.0.0.1"})
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	if err != nil {
		return nil, err
	}
	s.url = "https://" + ln.Addr().String()
	s.hs = &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		s.hs.Serve(ln)
	}()
	s.runReplicas()
	return s, nil
}

// hello hands an agent's hello to the leader's fleet; 503 between terms.
// One listener stands for every server's fleet port: a follower's answer
// would be a redirect to the leader's (daemon.fleetToLeader).
func (s *serverSide) hello(w http.ResponseWriter, r *http.Request) {
	if f := s.fleet(); f != nil {
		f.Handler().ServeHTTP(w, r)
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "no leader now", http.StatusServiceUnavailable)
}

// artifact serves GET /v1/artifacts/{digest} from the apps' artifact
// stores.
func (s *serverSide) artifact(w http.ResponseWriter, r *http.Request) {
	d := r.PathValue("digest")
	for _, a := range s.appList() {
		if !a.arts.Has(d) {
			continue
		}
		rc, err := a.arts.Reader(d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer rc.Close()
		io.Copy(w, rc)
		return
	}
	http.Error(w, "no such artifact", http.StatusNotFound)
}

// prepareHosts issues a node certificate from ca for each simulated host
// (a key made here that ca signs, as a join would, the files written as
// pki.Join leaves them), and returns the hosts' specs. Host i listens on
// its own loopback address 127.10.x.y. The servers admit the hosts
// (serverSide.admit).
func prepareHosts(ca *pki.CA, sc scenario, root string) ([]hostSpec, error) {
	specs := make([]hostSpec, sc.Hosts)
	for i := range specs {
		hs := hostSpec{
			Name:      fmt.Sprintf("h%04d", i),
			Zone:      fmt.Sprintf("zone-%c", 'a'+i%sc.Zones),
			Advertise: net.IPv4(127, 10, byte(i/200), byte(i%200+1)).String(),
			NodeDir:   filepath.Join(root, fmt.Sprintf("h%04d", i), "node"),
			DataDir:   filepath.Join(root, fmt.Sprintf("h%04d", i), "data"),
		}
		if err := issueNode(ca, hs.Name, hs.NodeDir); err != nil {
			return nil, err
		}
		specs[i] = hs
	}
	return specs, nil
}

// admit admits the named hosts as agents to the fleet's port.
func (s *serverSide) admit(names []string) error {
	for _, n := range names {
		if err := s.nodes.Admit(pki.Identity{Name: n, Role: api.RoleAgent}); err != nil {
			return err
		}
	}
	return nil
}

func issueNode(ca *pki.CA, name, dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return err
	}
	id := pki.Identity{Name: name, Role: api.RoleAgent}
	crt, err := ca.SignCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), id, 0)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"node.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600},
		{"ca.crt", ca.CertificatePEM(), 0o644},
		{"node.crt", crt, 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// appYAML is the shoal.yaml of each app. The simulated runtime runs no
// command; the app folder holds only version.txt (shoal.yaml is not part
// of the artifact), so every app ships the same artifact, fetched once
// per host.
const appYAML = `app: %s
data_dir: %s
run:
  command: ./serve
  stop_timeout: 2s
health:
  path: /health
  interval: %s
  timeout: 1s
group:
  min: 0
  max: %d
  desired: %d
  max_replacing: %d
balancer:
  listen: 127.0.0.1:0
  drain_timeout: 1s
admin:
  listen: 127.0.0.1:0
`

// writeAppConfigs writes every app's folder and shoal.yaml under dir
// (the same for every term and every server: the apps' folders and data
// dirs are shared by the replicas, see cluster.go).
func writeAppConfigs(dir string, sc scenario) error {
	for i := range sc.Apps {
		name := fmt.Sprintf("app%03d", i)
		app := filepath.Join(dir, "apps", name)
		if err := os.MkdirAll(app, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(app, "version.txt"), []byte("v1\n"), 0o644); err != nil {
			return err
		}
		yml := fmt.Sprintf(appYAML, name, filepath.Join(dir, "data", name), sc.HealthInterval,
			sc.PerApp, sc.PerApp, sc.MaxReplacing)
		if err := os.WriteFile(filepath.Join(app, "shoal.yaml"), []byte(yml), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// appConfigs loads every app's shoal.yaml, as writeAppConfigs wrote it.
func (s *serverSide) appConfigs() ([]*config.App, error) {
	var cfgs []*config.App
	for i := range s.sc.Apps {
		cfg, err := config.Load(filepath.Join(s.dir, "apps", fmt.Sprintf("app%03d", i), "shoal.yaml"))
		if err != nil {
			return nil, err
		}
		cfgs = append(cfgs, cfg)
	}
	return cfgs, nil
}

// startApps writes the apps' configurations and creates every app: the
// current term runs their controllers, and every later term too.
func (s *serverSide) startApps() error {
	if err := writeAppConfigs(s.dir, s.sc); err != nil {
		return err
	}
	if err := s.createApps(); err != nil {
		return err
	}
	if s.leader() == nil {
		return errors.New("start apps: no replica leads")
	}
	return nil
}

// createApps creates every app from its written configuration: the
// current term, if this side runs one, runs their controllers, and every
// later term too.
func (s *serverSide) createApps() error {
	cfgs, err := s.appConfigs()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created = true
	if s.cur == nil {
		return nil
	}
	return s.cur.startAppsLocked(cfgs)
}

// close ends every replica (the leader's term first: its controllers
// drain and stop their instances with -servers 1, leave them running
// with a cluster, as `shoal server` does), then the listener.
func (s *serverSide) close() error {
	err := s.closeReplicas()
	if s.hs != nil {
		s.hs.Close()
		<-s.served
	}
	return err
}
