package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/pki"
	"github.com/shoal-dev/shoal/internal/testenv"
)

// httpsJoinYAML is the server.yaml of server id on lab host h: every
// listener on h's address, so the admin API is served over TLS with a
// certificate of the fleet CA.
func httpsJoinYAML(h *testenv.LabHost, id string, bootstrap bool) string {
	return fmt.Sprintf(`data_dir: data
admin: {listen: "%[1]s:%[2]s"}
fleet: {listen: "%[1]s:%[3]s", url: "https://%[1]s:%[3]s", heartbeat: 200ms, lost_after: 3s}
balancer: {listen: "%[1]s:80", drain_timeout: 2s}
cluster: {id: %[4]s, listen: "%[1]s:%[5]s", bootstrap: %[6]t, election_timeout: 3s}
`, h.IP, labAdminPort, labFleetPort, id, labRaftPort, bootstrap)
}

// TestClusterJoinHTTPS joins a second `shoal server` to a cluster whose
// admin API is on a network address, so over https with the fleet CA's
// certificate, checked against --ca-pin (pki.PinTransport), each
// server in a namespace of its own. Refused first, exiting non-zero with
// the reason and nothing written in the joiner's data_dir: a wrong pin
// (a server posing as the cluster gets no token), a pin missing for an
// https URL, and a plain http URL to the network address. Then the join
// with the right pin: s2 holds the cluster's CA and token and is a
// voter, and a write through s2 (forwarded over the cluster's TLS) is
// the leader's.
func TestClusterJoinHTTPS(t *testing.T) {
	bin := testenv.BuildShoal(t)
	ctx := testenv.Context(t, 6*time.Minute)
	lab := testenv.NewLab(t, "s1", "s2", "cli")
	h1, h2 := lab.Host("s1"), lab.Host("s2")

	start := func(id string, h *testenv.LabHost, dir string, args ...string) (*testenv.Server, *client.Client) {
		t.Helper()
		cmd := lab.Command(h.Name, bin, append([]string{"server", "-c", filepath.Join(dir, "server.yaml")}, args...)...)
		cmd.Dir = dir
		srv, err := testenv.StartServer(ctx, cmd, filepath.Join(dir, "data"))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		t.Cleanup(func() {
			srv.Close()
			if t.Failed() {
				t.Logf("output of shoal server %s:\n%s", id, srv.Output())
			}
		})
		if want := "https://" + h.IP + ":" + labAdminPort; srv.AdminURL != want {
			t.Fatalf("%s serves its admin API at %s, want %s", id, srv.AdminURL, want)
		}
		c, err := client.NewWithOptions(srv.AdminURL, srv.Token, client.Options{CAPin: srv.CAPin})
		if err != nil {
			t.Fatal(err)
		}
		tr := c.HTTP.Transport.(*http.Transport)
		tr.DialContext = lab.Dialer("cli")
		t.Cleanup(tr.CloseIdleConnections)
		return srv, c
	}

	dir1 := t.TempDir()
	writeFile(t, filepath.Join(dir1, "server.yaml"), httpsJoinYAML(h1, "s1", true))
	s1, c1 := start("s1", h1, dir1)
	if err := testenv.WaitFor(ctx, func() error {
		st, err := c1.Servers(ctx)
		if err != nil {
			return err
		}
		if len(st) != 1 || st[0].Role != "Leader" {
			return fmt.Errorf("s1's cluster: %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir1, "data", adminapi.TokenFile)

	// refused runs s2's `shoal server` with args, which must exit
	// non-zero saying want, and leave nothing in its data_dir.
	refused := func(what, want string, args ...string) {
		t.Helper()
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "server.yaml"), httpsJoinYAML(h2, "s2", false))
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := lab.CommandContext(cctx, "s2", bin, append([]string{"server", "-c", filepath.Join(dir, "server.yaml")}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(string(out), want) {
			t.Fatalf("%s: %v, want a non-zero exit saying %q\n%s", what, err, want, out)
		}
		t.Logf("%s: %s", what, strings.TrimSpace(string(out)))
		ents, err := os.ReadDir(filepath.Join(dir, "data"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("%s left %v in the data_dir\n%s", what, names, out)
		}
	}
	other, err := pki.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	refused("a join with another CA's pin", "join the cluster at "+s1.AdminURL+": the server's certificate is not from the CA of cluster.join_ca_pin (--ca-pin) "+other.Pin()+", so it was not sent the admin token",
		"--join", s1.AdminURL, "--ca-pin", other.Pin(), "--join-token-file", tokenFile)
	refused("an https join with no pin", "server.yaml with the command line's --join flags: cluster.join_ca_pin: is required to join over https",
		"--join", s1.AdminURL, "--join-token-file", tokenFile)
	plain := "http://" + h1.IP + ":" + labAdminPort
	refused("a plain http join to a network address", "--join flags: cluster.join[0]: "+plain+" is plain http on a network address",
		"--join", plain, "--join-token-file", tokenFile)
	if strings.Contains(s1.Output(), "refused the admin token") {
		t.Fatalf("s1 saw a token from a refused join:\n%s", s1.Output())
	}

	dir2 := t.TempDir()
	writeFile(t, filepath.Join(dir2, "server.yaml"), httpsJoinYAML(h2, "s2", false))
	s2, c2 := start("s2", h2, dir2, "--join", s1.AdminURL, "--ca-pin", s1.CAPin, "--join-token-file", tokenFile)
	if s2.CAPin != s1.CAPin || s2.Token != s1.Token {
		t.Fatalf("s2 serves CA %s with token %q; the cluster's CA is %s", s2.CAPin, s2.Token, s1.CAPin)
	}
	if !strings.Contains(s2.Output(), `msg="added to the cluster"`) {
		t.Fatalf("s2 does not say it joined:\n%s", s2.Output())
	}
	if err := testenv.WaitFor(ctx, func() error {
		list, err := c1.Servers(ctx)
		if err != nil {
			return err
		}
		if len(list) != 2 || !list[0].Voter || !list[1].Voter || list[1].ID != "s2" || list[1].Role != "Follower" || list[1].Error != "" {
			return fmt.Errorf("the cluster as s1 lists it: %+v", list)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A write through s2, the follower, is forwarded to s1 over https.
	if _, err := c2.JoinToken(ctx, api.RoleAgent, "10m"); err != nil {
		t.Fatalf("a join token made through s2: %v", err)
	}
}
