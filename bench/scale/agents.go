package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/agent"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/release"
)

// hostSpec is one simulated host as the server side prepared it: its node
// identity (NodeDir, as a join leaves it), its folders and the loopback
// address its agent and instances listen on.
type hostSpec struct {
	Name      string `json:"name"`
	Zone      string `json:"zone"`
	Advertise string `json:"advertise"`
	NodeDir   string `json:"node_dir"`
	DataDir   string `json:"data_dir"`
}

// manifest is what the agents' process is given: the fleet's URL, each
// host's capacity and the hosts.
type manifest struct {
	Server string     `json:"server"`
	CPU    float64    `json:"cpu"`
	Memory int64      `json:"memory"`
	Hosts  []hostSpec `json:"hosts"`
	// CPUProfile, when set, is where the agents' process writes its CPU
	// profile, from start to end.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// simHost is a real agent (agent.Agent, over mutual TLS with its node
// certificate) over a simulated runtime.
type simHost struct {
	spec    hostSpec
	rt      *simRuntime
	tr      *http.Transport // the node's client, toward the server
	srv     *http.Server
	served  chan struct{}
	stopRun context.CancelFunc
	runDone chan struct{}
	once    sync.Once
}

// startHost loads the node, serves its agent on its advertise address and
// says hello to the server.
func startHost(ctx context.Context, m *manifest, hs hostSpec) (*simHost, error) {
	node, err := pki.LoadNode(hs.NodeDir)
	if err != nil {
		return nil, err
	}
	h := &simHost{spec: hs, rt: newSimRuntime(hs.Advertise), tr: &http.Transport{TLSClientConfig: node.ClientTLSConfig()}}
	client := &http.Client{Transport: h.tr}
	arts, err := release.Open(filepath.Join(hs.DataDir, "artifacts"), nil)
	if err != nil {
		return nil, err
	}
	ag, err := agent.New(agent.Config{Runtime: h.rt, Artifacts: arts, Source: &agent.HTTPSource{Base: m.Server, Client: client},
		DataDir: filepath.Join(hs.DataDir, "agent"), Name: hs.Name, Advertise: hs.Advertise})
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", hs.Advertise+":0", node.ServerTLSConfig())
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", hs.Name, err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	h.stopRun, h.runDone = stop, make(chan struct{})
	go func() {
		defer close(h.runDone)
		ag.Run(runCtx)
	}()
	h.srv = &http.Server{Handler: ag, ErrorLog: log.New(io.Discard, "", 0)}
	h.served = make(chan struct{})
	go func() {
		defer close(h.served)
		h.srv.Serve(ln)
	}()
	hi := api.AgentHello{URL: "https://" + ln.Addr().String(), Zone: hs.Zone, CPU: m.CPU, MemoryBytes: m.Memory, Epoch: ag.Epoch()}
	if err := hello(ctx, client, m.Server, hi); err != nil {
		h.close()
		return nil, fmt.Errorf("host %s: %w", hs.Name, err)
	}
	return h, nil
}

// hello posts hi to the server until it answers 204, for up to a
// minute: a 503 (no leader now, an election) or a 500 (the leader could
// not record the host: it lost its leadership meanwhile) is asked again
// a second later, as an agent does; anything else is an error.
func hello(ctx context.Context, c *http.Client, server string, hi api.AgentHello) error {
	b, err := json.Marshal(hi)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+"/v1/hello", bytes.NewReader(b))
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("hello: %w", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusNoContent:
			return nil
		case http.StatusServiceUnavailable, http.StatusInternalServerError:
		default:
			return fmt.Errorf("hello: %s: %s", resp.Status, bytes.TrimSpace(body))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hello: %w (last answer %s: %s)", ctx.Err(), resp.Status, bytes.TrimSpace(body))
		case <-time.After(time.Second):
		}
	}
}

// close takes the host off the network as a machine that went away: its
// agent stops answering and its instances' listeners close, without a
// word to the server.
func (h *simHost) close() {
	h.once.Do(func() {
		h.srv.Close()
		<-h.served
		h.rt.Close()
		h.stopRun()
		<-h.runDone
		h.tr.CloseIdleConnections()
	})
}

// startHosts starts every host of m, a few at a time; on an error the
// hosts started are closed.
func startHosts(ctx context.Context, m *manifest, parallel int) (map[string]*simHost, error) {
	var mu sync.Mutex
	hosts := map[string]*simHost{}
	var errs []error
	work := make(chan hostSpec)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for hs := range work {
				h, err := startHost(ctx, m, hs)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					hosts[hs.Name] = h
				}
				mu.Unlock()
			}
		}()
	}
	for _, hs := range m.Hosts {
		work <- hs
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeHosts(hosts)
		return nil, err
	}
	return hosts, nil
}

// closeHosts closes every host, a few at a time.
func closeHosts(hosts map[string]*simHost) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, h := range hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h.close()
		}()
	}
	wg.Wait()
}
