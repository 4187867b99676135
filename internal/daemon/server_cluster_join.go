package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/atomicfile"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/cluster"
	"github.com/shoal-dev/shoal/internal/pki"
)

// `shoal server --join URL` (server.yaml's cluster.join): a new server
// joins a cluster with the cluster's admin token and nothing copied by
// hand.
//
//	before the data_dir is opened (fetchClusterCA):
//	  GET {join}/v1/cluster/ca (admin token; https checked against cluster.join_ca_pin)
//	    --> data_dir/ca (pki.InstallCA: refused if another CA is there), data_dir/admin.token
//	after the raft node opened, only if it had no raft state (addToCluster):
//	  POST {join}/v1/servers {id, raft address} --forwarded to the leader--> AddVoter
//	    --> the leader sends its snapshot and log: this server catches up
//
// Safe because the CA's key crosses the network only to the holder of the
// admin token (who can already run any code on every host by deploying),
// and only over TLS whose server certificate chains to the pinned CA
// (pki.PinTransport), or over loopback (config refuses plain http
// elsewhere): the token is never sent before the server proved it holds a
// certificate of the cluster's CA, so a server posing as the cluster gets
// neither the token nor a joiner.

// joinCallTimeout bounds the CA's fetch from one server; joinAddTimeout
// the add through one server, which waits out an election (the client
// asks again while the cluster answers 503) and the configuration's
// commit.
const (
	joinCallTimeout = 15 * time.Second
	joinAddTimeout  = time.Minute
)

// fetchClusterCA installs the fleet CA and the admin token of the cluster
// of cluster.join in the data_dir, before openState loads them: from the
// first join URL that answers. It refuses, writing nothing, a wrong token,
// an https server whose certificate is not from the pinned CA (it is
// sent no token), and a data_dir of another cluster (another CA, or
// another admin token).
// A data_dir that was a member already (raft state) starts even when no
// join URL answers: the cluster's servers may be restarting together.
func (s *Server) fetchClusterCA(ctx context.Context) error {
	c := s.cfg.Cluster
	if c == nil || len(c.Join) == 0 {
		return nil
	}
	tok, err := readTokenFile(c.JoinTokenFile, "cluster.join_token_file")
	if err != nil {
		return err
	}
	data := s.cfg.DataDir
	if err := prepareDataDir(data, s.log); err != nil {
		return err
	}
	tokenPath := filepath.Join(data, adminapi.TokenFile)
	if have, err := os.ReadFile(tokenPath); err == nil && strings.TrimSpace(string(have)) != tok {
		return fmt.Errorf("join the cluster: data_dir %s belongs to another cluster: its %s is not the token of %s (start with an empty data_dir to join)",
			data, tokenPath, c.JoinTokenFile)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("join the cluster: %w", err)
	}
	_, statErr := os.Stat(filepath.Join(data, "raft", "raft.db"))
	member := statErr == nil
	var errs []error
	for _, u := range c.Join {
		cctx, cancel := context.WithTimeout(ctx, joinCallTimeout)
		ca, err := s.joinClient(u, tok).ClusterCA(cctx)
		cancel()
		if client.IsStatus(err, http.StatusUnauthorized) {
			return fmt.Errorf("join the cluster at %s: the server refused the admin token of %s (cluster.join_token_file): use the cluster's data_dir/admin.token", u, c.JoinTokenFile)
		}
		if client.IsStatus(err, http.StatusNotFound) {
			return fmt.Errorf("join the cluster at %s: that server is not one of a cluster (no /v1/cluster/ca): start it with a cluster section", u)
		}
		if errors.Is(err, pki.ErrWrongCA) {
			return fmt.Errorf("join the cluster at %s: the server's certificate is not from the CA of cluster.join_ca_pin (--ca-pin) %s, so it was not sent the admin token: check the pin `shoal server` printed there, and the URL: %w",
				u, c.JoinCAPin, err)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		pin, err := pki.InstallCA(filepath.Join(data, "ca"), []byte(ca.CertPEM), []byte(ca.KeyPEM))
		if errors.Is(err, pki.ErrOtherCA) {
			return fmt.Errorf("join the cluster at %s: data_dir %s belongs to another cluster: %w (start with an empty data_dir to join)", u, data, err)
		}
		if err != nil {
			return fmt.Errorf("join the cluster at %s: %w", u, err)
		}
		if err := atomicfile.Write(tokenPath, []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("join the cluster: admin token: %w", err)
		}
		s.log.Info("fleet CA and admin token of the cluster in place", "join", u, "ca_pin", pin, "dir", data)
		return nil
	}
	if member {
		s.log.Warn("no join URL answered; starting as the member of the cluster this data_dir is", "join", strings.Join(c.Join, " "), "error", errors.Join(errs...))
		return nil
	}
	return fmt.Errorf("join the cluster: no server answered at %s: %w", strings.Join(c.Join, ", "), errors.Join(errs...))
}

// addToCluster asks the cluster of cluster.join to add this server as a
// voter (POST /v1/servers on the first join URL that takes it; a follower
// forwards it to the leader), unless the node had raft state already: a
// server added before is a member, and a rerun of --join only checks its
// raft address later (keepAddress). The leader then sends the log; this
// server catches up.
func (s *Server) addToCluster(ctx context.Context) error {
	c := s.cfg.Cluster
	if c == nil || len(c.Join) == 0 || s.cl.node.HadState() {
		return nil
	}
	if err := s.postAdd(ctx); err != nil {
		return fmt.Errorf("join the cluster: %w", err)
	}
	s.log.Info("added to the cluster", "server", s.cl.node.ID(), "raft", s.cl.node.Advertise())
	return nil
}

// keepAddress runs on a member started with cluster.join (a rerun of
// --join): once this replica's configuration lists this server, it is
// done when the raft address there is this start's; a server whose raft
// address changed (a new port or IP) asks the cluster to update it (an
// add of the same id), since the others can no longer reach it. It tries
// every 2 s until ctx ends.
func (s *Server) keepAddress(ctx context.Context) {
	c := s.cfg.Cluster
	if c == nil || len(c.Join) == 0 || !s.cl.node.HadState() {
		return
	}
	id, addr := s.cl.node.ID(), s.cl.node.Advertise()
	for {
		servers, err := s.cl.node.Servers(ctx)
		if err == nil {
			i := slices.IndexFunc(servers, func(srv cluster.Server) bool { return srv.ID == id })
			if i >= 0 && servers[i].Addr == addr {
				return
			}
			if err := s.postAdd(ctx); err == nil {
				s.log.Info("raft address updated in the cluster", "server", id, "raft", addr)
				return
			} else if ctx.Err() == nil {
				s.log.Warn("raft address not updated in the cluster yet; trying again", "server", id, "raft", addr, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// postAdd is POST /v1/servers {this server's id and raft address} on the
// first join URL that takes it.
func (s *Server) postAdd(ctx context.Context) error {
	id, addr := s.cl.node.ID(), s.cl.node.Advertise()
	var errs []error
	for _, u := range s.cfg.Cluster.Join {
		cctx, cancel := context.WithTimeout(ctx, joinAddTimeout)
		_, err := s.joinClient(u, s.token).AddServer(cctx, id, addr)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("server %s at %s not added: %w", id, addr, errors.Join(errs...))
}

// joinClient is an admin client of the server at u that checks an https
// certificate against cluster.join_ca_pin (checked by config already).
func (s *Server) joinClient(u, token string) *client.Client {
	cl, err := client.NewWithOptions(u, token, client.Options{CAPin: s.cfg.Cluster.JoinCAPin})
	if err != nil {
		cl = client.New(u, token) // unreachable: the config checked the pin
	}
	return cl
}

// readTokenFile reads a one-line secret from path (key names it in
// messages).
func readTokenFile(path, key string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s %s is empty", key, path)
	}
	return tok, nil
}
