package daemon

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// Servers hand out their URLs (issue 14), as Nomad's servers do to their
// clients: every answer of a server's fleet listener carries the fleet
// URLs of the cluster's servers it knows (api.ServersHeader). A node (an
// agent, a balancer node) keeps those its file does not list in
// ServersFile under its data directory and tries them after the file's,
// so that a cluster whose servers changed since the file was written
// still reaches the node. The file's servers are always tried first;
// the learned ones are replaced whole by each answer that names others.

// ServersFile is the file, in an agent's or a balancer node's data
// directory, of the server URLs it learned from the servers.
const ServersFile = "servers.json"

// serversSchema is the version of ServersFile's format.
const serversSchema = 1

// serversState is ServersFile's content.
type serversState struct {
	Schema  int      `json:"schema"`
	Servers []string `json:"servers"`
}

// openServerList is the list of the file's urls followed by the ones
// learned before and kept at path. A file that cannot be read back is
// an error naming it.
func openServerList(urls []string, path string) (*serverList, error) {
	l := newServerList(urls)
	l.path = path
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read learned servers: %w", err)
	}
	var st serversState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(&st)
	if err == nil && st.Schema != serversSchema {
		err = fmt.Errorf("schema %d, want %d", st.Schema, serversSchema)
	}
	for _, u := range st.Servers {
		if err == nil {
			err = checkServerURL(u)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: damaged list of learned servers: %w (remove the file: the servers of the configuration are tried and the others learned again)", path, err)
	}
	l.setLearnedLocked(st.Servers)
	return l, nil
}

// checkServerURL refuses what is not a server's fleet URL: https, a
// host, no path.
func checkServerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return fmt.Errorf("%q is not a server's fleet URL (https://host:port)", s)
	}
	return nil
}

// learn takes the servers named by an answer's api.ServersHeader (none:
// nothing changes). It reports whether the learned list changed; the
// change is kept in the file (an error there leaves it learned for this
// run only).
func (l *serverList) learn(header string) (changed bool, err error) {
	if header == "" {
		return false, nil
	}
	var got []string
	for _, s := range strings.Split(header, ",") {
		s = strings.TrimRight(strings.TrimSpace(s), "/")
		if checkServerURL(s) != nil {
			return false, fmt.Errorf("%s %q: %w", api.ServersHeader, header, checkServerURL(s))
		}
		got = append(got, s)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	before := slices.Clone(l.urls)
	l.setLearnedLocked(got)
	if slices.Equal(before, l.urls) {
		return false, nil
	}
	if l.path == "" {
		return true, nil
	}
	data, err := json.MarshalIndent(serversState{Schema: serversSchema, Servers: l.urls[len(l.file):]}, "", "  ")
	if err != nil {
		return true, err
	}
	if err := atomicfile.Write(l.path, append(data, '\n'), 0o600); err != nil {
		return true, fmt.Errorf("keep learned servers: %w", err)
	}
	return true, nil
}

// setLearnedLocked makes the list the file's URLs then learned (those the
// file lacks, in their order), keeping the current URL when it stays.
func (l *serverList) setLearnedLocked(learned []string) {
	cur := l.urls[l.cur]
	urls := slices.Clone(l.file)
	for _, u := range learned {
		if !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	l.urls = urls
	l.cur = max(slices.Index(urls, cur), 0)
}

// learning is a RoundTripper that gives every answer's servers to the
// list (see learn).
type learning struct {
	next    *http.Transport
	servers *serverList
	log     *slog.Logger
}

// fleetClient is a node's client of the servers: fleetTransport(tc,
// dial), learning the servers each answer names into servers.
func fleetClient(tc *tls.Config, dial dialFunc, servers *serverList, log *slog.Logger) *http.Client {
	return &http.Client{Transport: &learning{next: fleetTransport(tc, dial), servers: servers, log: log}}
}

// RoundTrip implements http.RoundTripper.
func (t *learning) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	if changed, err := t.servers.learn(resp.Header.Get(api.ServersHeader)); err != nil {
		t.log.Warn("servers named by a server not kept", "server", r.URL.Host, "error", err)
	} else if changed {
		t.log.Info("servers learned from the cluster", "server", r.URL.Host, "servers", strings.Join(t.servers.all(), ","))
	}
	return resp, nil
}

// CloseIdleConnections closes the transport's idle connections
// (http.Client.CloseIdleConnections).
func (t *learning) CloseIdleConnections() { t.next.CloseIdleConnections() }
