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
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/controller"
	"github.com/shoal-dev/shoal/internal/fleet"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/pool"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/store"
)

// scenario is the fleet and the apps to run on it.
type scenario struct {
	Hosts, Zones   int
	Apps, PerApp   int
	MaxReplacing   int
	HealthInterval time.Duration
	HeartbeatEvery time.Duration
	LostAfter      time.Duration
	// HostCPU and HostMemory are each host's capacity as its hello
	// declares it (shown in its status; the apps declare no run.cpu or
	// run.memory, which this shoal.yaml does not have yet).
	HostCPU    float64
	HostMemory int64
	Logger     *slog.Logger
}

// serverSide is what `shoal server` runs for a fleet, composed here in
// process from the real parts: the fleet CA and its join server's node
// list, the store, fleet.Fleet on a mutual-TLS listener (hello and
// artifacts), and one controller.Controller per app whose Host is the
// fleet's.
type serverSide struct {
	sc    scenario
	dir   string
	ca    *pki.CA
	nodes *pki.MemNodes
	pki   *pki.Server
	store *store.Store
	fleet *fleet.Fleet
	url   string

	hs     *http.Server
	served chan struct{}

	stopFleet context.CancelFunc
	fleetDone chan error

	mu   sync.Mutex
	apps []*appRun
}

// appRun is one app's controller, running.
type appRun struct {
	name string
	ctl  *controller.Controller
	arts *release.Store
	stop context.CancelFunc
	done chan error
}

// newServerSide opens the CA, the store and the fleet under dir and
// serves the fleet's port on 127.0.0.1; Run is started at once.
func newServerSide(dir string, sc scenario) (_ *serverSide, err error) {
	s := &serverSide{sc: sc, dir: dir, nodes: &pki.MemNodes{}}
	if s.ca, err = pki.LoadOrCreateCA(filepath.Join(dir, "ca")); err != nil {
		return nil, err
	}
	if s.store, err = store.Open(filepath.Join(dir, "shoal.db"), store.Options{}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.store.Close()
		}
	}()
	if s.pki, err = pki.NewServer(pki.ServerConfig{CA: s.ca, Tokens: s.store.Tokens(), Nodes: s.nodes}); err != nil {
		return nil, err
	}
	cert, err := s.ca.IssueServer([]string{"shoal-server"}, 0)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.Certificate())
	s.fleet, err = fleet.New(fleet.Options{Store: s.store.Hosts(), PKI: s.pki,
		TLS:            &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, MinVersion: tls.VersionTLS13},
		HeartbeatEvery: sc.HeartbeatEvery, LostAfter: sc.LostAfter, Logger: sc.Logger})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/hello", s.fleet.Handler())
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
	ctx, cancel := context.WithCancel(context.Background())
	s.stopFleet, s.fleetDone = cancel, make(chan error, 1)
	go func() { s.fleetDone <- s.fleet.Run(ctx) }()
	return s, nil
}

// artifact serves GET /v1/artifacts/{digest} from the apps' artifact
// stores.
func (s *serverSide) artifact(w http.ResponseWriter, r *http.Request) {
	d := r.PathValue("digest")
	s.mu.Lock()
	apps := s.apps
	s.mu.Unlock()
	for _, a := range apps {
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

// prepareHosts issues a node certificate for each simulated host (the
// server's CA signs a key made here, as a join would, and the files are
// written as pki.Join leaves them), admits the node, and returns the
// hosts' specs. Host i listens on its own loopback address 127.10.x.y.
func (s *serverSide) prepareHosts(root string) ([]hostSpec, error) {
	specs := make([]hostSpec, s.sc.Hosts)
	for i := range specs {
		hs := hostSpec{
			Name:      fmt.Sprintf("h%04d", i),
			Zone:      fmt.Sprintf("zone-%c", 'a'+i%s.sc.Zones),
			Advertise: net.IPv4(127, 10, byte(i/200), byte(i%200+1)).String(),
			NodeDir:   filepath.Join(root, fmt.Sprintf("h%04d", i), "node"),
			DataDir:   filepath.Join(root, fmt.Sprintf("h%04d", i), "data"),
		}
		if err := s.issueNode(hs.Name, hs.NodeDir); err != nil {
			return nil, err
		}
		specs[i] = hs
	}
	return specs, nil
}

func (s *serverSide) issueNode(name, dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return err
	}
	id := pki.Identity{Name: name, Role: api.RoleAgent}
	crt, err := s.ca.SignCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), id, 0)
	if err != nil {
		return err
	}
	if err := s.nodes.Admit(id); err != nil {
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
		{"ca.crt", s.ca.CertificatePEM(), 0o644},
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

// startApps creates and runs every app's controller.
func (s *serverSide) startApps() error {
	for i := range s.sc.Apps {
		name := fmt.Sprintf("app%03d", i)
		dir := filepath.Join(s.dir, "apps", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "version.txt"), []byte("v1\n"), 0o644); err != nil {
			return err
		}
		yml := fmt.Sprintf(appYAML, name, filepath.Join(s.dir, "data", name), s.sc.HealthInterval,
			s.sc.PerApp, s.sc.PerApp, s.sc.MaxReplacing)
		if err := os.WriteFile(filepath.Join(dir, "shoal.yaml"), []byte(yml), 0o644); err != nil {
			return err
		}
		cfg, err := config.Load(filepath.Join(dir, "shoal.yaml"))
		if err != nil {
			return err
		}
		arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
		if err != nil {
			return err
		}
		ctl, err := controller.New(controller.Options{Config: cfg, Store: s.store, Artifacts: arts,
			Host: s.fleet.Host(name), Pool: pool.New(pool.Options{Name: name, DrainTimeout: time.Second}), Logger: s.sc.Logger})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		a := &appRun{name: name, ctl: ctl, arts: arts, stop: cancel, done: make(chan error, 1)}
		s.mu.Lock()
		s.apps = append(s.apps, a)
		s.mu.Unlock()
		go func() { a.done <- ctl.Run(ctx) }()
	}
	return nil
}

// close ends the controllers (they drain and stop their instances), then
// the fleet, the listener and the store.
func (s *serverSide) close() error {
	var errs []error
	s.mu.Lock()
	apps := s.apps
	s.mu.Unlock()
	for _, a := range apps {
		a.stop()
	}
	for _, a := range apps {
		if err := <-a.done; err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.name, err))
		}
	}
	s.stopFleet()
	if err := <-s.fleetDone; err != nil {
		errs = append(errs, err)
	}
	s.hs.Close()
	<-s.served
	if err := s.store.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
