package daemon

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// TestNodeLearnsServers: a node whose file names server a only learns
// server b from a's answer (api.ServersHeader), keeps it in ServersFile,
// and reaches b when a is gone, in this run and after a restart (the
// file's a still tried first). A damaged file is refused by name; an
// answer naming what is not a server's URL changes nothing.
func TestNodeLearnsServers(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	hello := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	b := httptest.NewTLSServer(hello("b"))
	defer b.Close()
	var named string // what a's answers name
	a := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.ServersHeader, named)
		io.WriteString(w, "a")
	}))
	defer a.Close()
	named = a.URL + "," + b.URL + "/"
	tc := a.Client().Transport.(*http.Transport).TLSClientConfig // trusts both test servers' certificate

	path := filepath.Join(t.TempDir(), ServersFile)
	list, err := openServerList([]string{a.URL}, path)
	if err != nil {
		t.Fatal(err)
	}
	client := fleetClient(tc, nil, list, testLogger(t))
	defer client.CloseIdleConnections()
	get := func(u string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/v1/hello", nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	if got, err := get(a.URL); err != nil || got != "a" {
		t.Fatalf("GET a: %q, %v", got, err)
	}
	if got, want := list.all(), []string{a.URL, b.URL}; !slices.Equal(got, want) {
		t.Fatalf("servers after a's answer: %v, want %v", got, want)
	}

	// a goes; the node reaches b.
	a.Close()
	var answered string
	if err := list.try(ctx, func(u string) error {
		got, err := get(u)
		answered = got
		return err
	}); err != nil || answered != "b" {
		t.Fatalf("with a gone: answered %q, %v; want b", answered, err)
	}
	if list.current() != b.URL {
		t.Errorf("current server %s, want b %s", list.current(), b.URL)
	}

	// A restart keeps what was learned, after the file's servers.
	again, err := openServerList([]string{a.URL}, path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := again.all(), []string{a.URL, b.URL}; !slices.Equal(got, want) {
		t.Errorf("servers after a restart: %v, want %v", got, want)
	}

	// An answer naming something else is refused whole.
	if changed, err := again.learn("https://10.0.0.9:7443,http://10.0.0.8:80"); err == nil || changed {
		t.Errorf("learn of a plain http URL: changed %v, %v; want an error", changed, err)
	}
	if got := again.all(); len(got) != 2 {
		t.Errorf("servers after a refused answer: %v", got)
	}

	if err := os.WriteFile(path, []byte(`{"schema": 1, "servers": ["https://10.0.0.9:7443"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openServerList([]string{a.URL}, path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a truncated %s: %v, want an error naming it", ServersFile, err)
	}
	if err := os.WriteFile(path, []byte(`{"schema": 2, "servers": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openServerList([]string{a.URL}, path); err == nil || !strings.Contains(err.Error(), "schema 2") {
		t.Errorf("another schema: %v, want an error naming it", err)
	}
}

// TestServerNamesItself: every answer of a server's fleet listener names
// its fleet URL (api.ServersHeader), a refusal included.
func TestServerNamesItself(t *testing.T) {
	ts := startServer(t, serverConfig(t, t.TempDir(), "127.0.0.1:0"))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(testenv.Context(t, 30*time.Second), http.MethodGet, ts.ready.FleetURL+"/v1/lb/config", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(api.ServersHeader); resp.StatusCode != http.StatusUnauthorized || got != ts.ready.FleetURL {
		t.Errorf("answer %d naming servers %q, want 401 naming %q", resp.StatusCode, got, ts.ready.FleetURL)
	}
}
