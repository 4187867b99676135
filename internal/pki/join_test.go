package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func TestJoinGivesAWorkingCertificate(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	n, dir := f.join(t, "web-1", api.RoleAgent)
	for name, want := range map[string]fs.FileMode{"": 0o700, "node.key": 0o600, "node.crt": 0o644, "ca.crt": 0o644} {
		if got := mode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s: mode %04o, want %04o", filepath.Join(dir, name), got, want)
		}
	}
	if id := n.Identity(); id != (Identity{Name: "web-1", Role: api.RoleAgent}) {
		t.Fatalf("identity %+v", id)
	}
	if life := n.Certificate().NotAfter.Sub(f.clock.Now()); life != DefaultNodeTTL {
		t.Fatalf("certificate lives %s, want %s", life, DefaultNodeTTL)
	}
	status, body, err := f.get(ctx, nodeClient(t, n), "/v1/whoami")
	if err != nil || status != http.StatusOK || !strings.HasPrefix(body, "web-1 agent "+n.Certificate().SerialNumber.String()) {
		t.Fatalf("mTLS call: %d %q %v", status, body, err)
	}
	if f.nodes.State("web-1") != NodeActive {
		t.Fatalf("node state %s after the join", f.nodes.State("web-1"))
	}
	if !strings.Contains(f.log.String(), "node joined") {
		t.Errorf("no join logged:\n%s", f.log)
	}

	loaded, err := LoadNode(dir, WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Certificate().Equal(n.Certificate()) || loaded.Identity() != n.Identity() {
		t.Fatal("LoadNode loaded another certificate")
	}
	if _, err := Join(ctx, f.url, f.token(t, api.RoleAgent), "web-9", dir, WithClock(f.clock.Now)); err == nil ||
		!strings.Contains(err.Error(), filepath.Join(dir, "node.key")) {
		t.Fatalf("a second join into a joined directory: %v", err)
	}
}

func TestTokenWorksOnce(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	tok := f.token(t, api.RoleLB)
	n, err := Join(ctx, f.url, tok, "lb-1", filepath.Join(t.TempDir(), "a"), WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if n.Identity().Role != api.RoleLB {
		t.Fatalf("role %s, want the token's (lb)", n.Identity().Role)
	}
	_, err = Join(ctx, f.url, tok, "lb-2", filepath.Join(t.TempDir(), "b"), WithClock(f.clock.Now))
	var re *RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || re.Message != tokenRefused {
		t.Fatalf("second use: %v, want 401 with the one refusal message", err)
	}
	if !strings.Contains(f.log.String(), ErrTokenUsed.Error()) {
		t.Errorf("the server did not log why:\n%s", f.log)
	}
	if f.nodes.State("lb-2") != NodeUnknown {
		t.Fatal("a refused join admitted its node")
	}
}

// TestConcurrentJoinsWithOneToken: of joins racing with one token, one
// gets in.
func TestConcurrentJoinsWithOneToken(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	tok := f.token(t, api.RoleAgent)
	const joins = 6
	errs := make(chan error, joins)
	var wg sync.WaitGroup
	for i := range joins {
		wg.Go(func() {
			name := fmt.Sprintf("web-%d", i)
			_, err := Join(ctx, f.url, tok, name, filepath.Join(t.TempDir(), name), WithClock(f.clock.Now))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok, refused := 0, 0
	for err := range errs {
		var re *RefusedError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &re) && re.Status == http.StatusUnauthorized:
			refused++
		default:
			t.Errorf("join: %v", err)
		}
	}
	if ok != 1 || refused != joins-1 {
		t.Fatalf("%d joins succeeded and %d were refused; want 1 and %d", ok, refused, joins-1)
	}
}

// TestRefusedTokensLookAlike sends join requests with each kind of bad
// token: the answers are identical, the server's log tells them apart.
func TestRefusedTokensLookAlike(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.pool, Time: f.clock.Now}}}
	defer client.CloseIdleConnections()
	good := func() Token {
		tok, err := ParseToken(f.token(t, api.RoleAgent))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	used := good()
	if _, err := f.tokens.Take(used.ID, "someone", func(api.JoinToken) error { return nil }); err != nil {
		t.Fatal(err)
	}
	expired := good()
	f.clock.Add(DefaultTokenTTL) // every token made so far expires now
	fresh := good()
	wrongSecret := fresh
	wrongSecret.Secret = bytes.Repeat([]byte{1}, 32)
	unknown := fresh
	unknown.ID = "aaaaaaaaaaaaaaaa"
	otherCA := fresh
	otherCA.Pin = "sha256:" + strings.Repeat("0", 64)
	cases := []struct {
		name, token, log string
	}{
		{"malformed", "shoal-join-v1.x.y.z", ErrTokenMalformed.Error()},
		{"unknown", unknown.String(), ErrTokenUnknown.Error()},
		{"wrong secret", wrongSecret.String(), ErrTokenSecret.Error()},
		{"used", used.String(), ErrTokenUsed.Error()},
		{"expired", expired.String(), ErrTokenExpired.Error()},
		{"another CA's pin", otherCA.String(), "token names another CA"},
	}
	for _, tc := range cases {
		mark := len(f.log.String())
		body, _ := json.Marshal(api.JoinRequest{Token: tc.token, Name: "web-1", CSR: string(csrFor(t, "web-1"))})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/v1/join", bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb api.ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusUnauthorized || eb.Error != tokenRefused {
			t.Errorf("%s: %d %q %v; want 401 with the one refusal message", tc.name, resp.StatusCode, eb.Error, err)
		}
		if logged := f.log.String()[mark:]; !strings.Contains(logged, tc.log) {
			t.Errorf("%s: the server logged %q, want %q", tc.name, logged, tc.log)
		}
	}
	// The fresh token, refused with a wrong secret, still works.
	if _, err := Join(ctx, f.url, fresh.String(), "web-1", filepath.Join(t.TempDir(), "n"), WithClock(f.clock.Now)); err != nil {
		t.Fatalf("a token whose forgery was refused no longer works: %v", err)
	}
}

func TestExpiredTokenRefused(t *testing.T) {
	f := newFleet(t)
	tok := f.token(t, api.RoleAgent)
	f.clock.Add(DefaultTokenTTL + time.Second)
	_, err := Join(testenv.Context(t, time.Minute), f.url, tok, "web-1", filepath.Join(t.TempDir(), "n"), WithClock(f.clock.Now))
	var re *RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || !strings.Contains(f.log.String(), ErrTokenExpired.Error()) {
		t.Fatalf("expired token: %v; log:\n%s", err, f.log)
	}
}

func TestTamperedPinRefusesTheServer(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	tok, err := ParseToken(f.token(t, api.RoleAgent))
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := tok
	tampered.Pin = other.Pin()
	dir := filepath.Join(t.TempDir(), "n")
	_, err = Join(ctx, f.url, tampered.String(), "web-1", dir, WithClock(f.clock.Now))
	if !errors.Is(err, ErrWrongCA) || !strings.Contains(err.Error(), other.Pin()) {
		t.Fatalf("join with another CA's pin: %v, want ErrWrongCA naming the pin", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused join left node.key: %v", err)
	}
	if strings.Contains(f.log.String(), "join") {
		t.Fatalf("the request reached the server:\n%s", f.log)
	}
	// The token itself was never sent, so it still works.
	if _, err := Join(ctx, f.url, tok.String(), "web-1", dir, WithClock(f.clock.Now)); err != nil {
		t.Fatal(err)
	}
}

func TestRequireNode(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.pool, Time: f.clock.Now}}}
	defer anon.CloseIdleConnections()
	if status, _, err := f.get(ctx, anon, "/v1/whoami"); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("no client certificate: %d %v, want 401", status, err)
	}
	agent, _ := f.join(t, "web-1", api.RoleAgent)
	lb, _ := f.join(t, "lb-1", api.RoleLB)
	if status, _, err := f.get(ctx, nodeClient(t, agent), "/v1/lb-only"); err != nil || status != http.StatusForbidden {
		t.Fatalf("agent on an lb endpoint: %d %v, want 403", status, err)
	}
	if status, body, err := f.get(ctx, nodeClient(t, lb), "/v1/lb-only"); err != nil || status != http.StatusOK || !strings.HasPrefix(body, "lb-1 lb ") {
		t.Fatalf("lb on its endpoint: %d %q %v", status, body, err)
	}

	f.nodes.Remove("web-1")
	if status, _, err := f.get(ctx, nodeClient(t, agent), "/v1/whoami"); err != nil || status != http.StatusForbidden {
		t.Fatalf("removed node: %d %v, want 403", status, err)
	}
	before := agent.Certificate()
	err := agent.Renew(ctx, f.url)
	var re *RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusForbidden {
		t.Fatalf("renewal of a removed node: %v, want 403", err)
	}
	if !agent.Certificate().Equal(before) {
		t.Fatal("a refused renewal changed the certificate")
	}
	// The removed node's name cannot be taken by a new join either.
	_, err = Join(ctx, f.url, f.token(t, api.RoleAgent), "web-1", filepath.Join(t.TempDir(), "again"), WithClock(f.clock.Now))
	if !errors.As(err, &re) || re.Status != http.StatusConflict {
		t.Fatalf("join under a removed name: %v, want 409", err)
	}
	// A certificate from another CA fails the handshake.
	other := newFleet(t)
	stranger, _ := other.join(t, "web-2", api.RoleAgent)
	cfg := stranger.ClientTLSConfig()
	cfg.RootCAs = f.ca.pool
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	if status, _, err := f.get(ctx, c, "/v1/whoami"); err == nil {
		t.Fatalf("a certificate of another CA got %d", status)
	}
}

func TestRenewKeepsConnectionsAndExtendsExpiry(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	n, dir := f.join(t, "web-1", api.RoleAgent)
	old := n.Certificate()
	client := nodeClient(t, n)
	if status, body, err := f.get(ctx, client, "/v1/whoami"); err != nil || status != http.StatusOK || !strings.HasSuffix(body, " "+old.SerialNumber.String()) {
		t.Fatalf("before renewal: %d %q %v", status, body, err)
	}

	f.clock.Add(17 * time.Hour)
	if err := n.Renew(ctx, f.url); err != nil {
		t.Fatal(err)
	}
	renewed := n.Certificate()
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || !renewed.NotAfter.After(old.NotAfter) ||
		renewed.NotAfter.Sub(f.clock.Now()) != DefaultNodeTTL || n.Identity() != (Identity{"web-1", api.RoleAgent}) {
		t.Fatalf("renewed: serial %s (old %s), not after %s (old %s)", renewed.SerialNumber, old.SerialNumber, renewed.NotAfter, old.NotAfter)
	}
	if onDisk, err := readCertFile(filepath.Join(dir, "node.crt")); err != nil || !onDisk.Equal(renewed) {
		t.Fatalf("node.crt after renewal: %v", err)
	}

	// The open connection goes on with the certificate of its handshake.
	var reused bool
	trace := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	status, body, err := f.get(trace, client, "/v1/whoami")
	if err != nil || status != http.StatusOK || !reused || !strings.HasSuffix(body, " "+old.SerialNumber.String()) {
		t.Fatalf("old connection after renewal: %d %q %v, reused %v", status, body, err, reused)
	}
	// A new connection presents the new certificate.
	status, body, err = f.get(ctx, nodeClient(t, n), "/v1/whoami")
	if err != nil || status != http.StatusOK || !strings.HasSuffix(body, " "+renewed.SerialNumber.String()) {
		t.Fatalf("new connection after renewal: %d %q %v", status, body, err)
	}
	// Past the old certificate's expiry the node still gets in.
	f.clock.Set(old.NotAfter.Add(time.Minute))
	if status, _, err := f.get(ctx, nodeClient(t, n), "/v1/whoami"); err != nil || status != http.StatusOK {
		t.Fatalf("after the old certificate expired: %d %v", status, err)
	}
	loaded, err := LoadNode(dir, WithClock(f.clock.Now))
	if err != nil || !loaded.Certificate().Equal(renewed) {
		t.Fatalf("LoadNode after renewal: %v", err)
	}
}

func TestExpiredNodeCertificateFailsTheHandshake(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	n, _ := f.join(t, "web-1", api.RoleAgent)
	f.clock.Set(n.Certificate().NotAfter.Add(time.Second))
	if !n.Expired() {
		t.Fatal("Expired() is false past NotAfter")
	}
	// The client sends the expired certificate (it does not check its own
	// dates); the server refuses it at the handshake.
	status, _, err := f.get(ctx, nodeClient(t, n), "/v1/whoami")
	if err == nil {
		t.Fatalf("an expired certificate got %d", status)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("handshake error %v does not mention the certificate", err)
	}
	if err := n.Renew(ctx, f.url); err == nil {
		t.Fatal("an expired certificate renewed")
	}
}

func TestDamagedNodeFilesRefusedByName(t *testing.T) {
	f := newFleet(t)
	_, dir := f.join(t, "web-1", api.RoleAgent)
	_, otherDir := f.join(t, "web-2", api.RoleAgent)
	cases := []struct {
		name   string
		file   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"key truncated", "node.key", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, "node.key")) }, "no PEM block"},
		{"key readable by others", "node.key", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "node.key"), 0o640) }, "mode 0640"},
		{"key of another node", "node.key", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(otherDir, "node.key"))
			write(t, filepath.Join(dir, "node.key"), b, 0o600)
		}, "does not match"},
		{"key missing", "node.key", func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "node.key")) }, "missing"},
		{"cert damaged", "node.crt", func(t *testing.T, dir string) { flipInPEM(t, filepath.Join(dir, "node.crt")) }, "damaged"},
		{"cert missing", "node.crt", func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "node.crt")) }, "missing"},
		{"ca damaged", "ca.crt", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, "ca.crt")) }, "no PEM block"},
		{"ca of another fleet", "node.crt", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "ca.crt"), newFleet(t).ca.CertificatePEM(), 0o644)
		}, "not signed by the CA"},
	}
	missing := filepath.Join(t.TempDir(), "none")
	var fe *FileError
	if _, err := LoadNode(missing); !errors.As(err, &fe) || fe.Path != missing {
		t.Fatalf("LoadNode of a missing directory: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("LoadNode created the directory it was asked to load")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "node")
			copyDir(t, dir, d)
			tc.damage(t, d)
			_, err := LoadNode(d, WithClock(f.clock.Now))
			var fe *FileError
			want := filepath.Join(d, tc.file)
			if !errors.As(err, &fe) || fe.Path != want || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a *FileError naming %s and saying %q", err, want, tc.want)
			}
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node.key", "node.crt", "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(to, name), b, mode(t, filepath.Join(from, name)))
	}
}

// TestServerCertificateReissued: the fleet listener's certificate is
// issued again at two thirds of its lifetime, and nodes accept the new one.
func TestServerCertificateReissued(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	serverSerial := func(c *http.Client, want int) string {
		t.Helper()
		defer c.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url+"/v1/whoami", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("whoami: %d, want %d", resp.StatusCode, want)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	anon := func() *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.pool, Time: f.clock.Now}}}
	}
	first := serverSerial(anon(), http.StatusUnauthorized)
	f.clock.Add(DefaultServerTTL/2 - time.Hour)
	if again := serverSerial(anon(), http.StatusUnauthorized); again != first {
		t.Fatal("the server's certificate changed before two thirds of its lifetime")
	}
	f.clock.Add(DefaultServerTTL/6 + 2*time.Hour)
	later := serverSerial(anon(), http.StatusUnauthorized)
	if later == first {
		t.Fatal("the server's certificate was not re-issued after two thirds of its lifetime")
	}
	n, _ := f.join(t, "web-1", api.RoleAgent)
	if got := serverSerial(&http.Client{Transport: &http.Transport{TLSClientConfig: n.ClientTLSConfig()}}, http.StatusOK); got != later {
		t.Fatalf("a node saw server certificate %s, want %s", got, later)
	}
}

// TestNodeServesOverMutualTLS: a node's own API takes the server's
// certificate as a client, refuses a caller without one, presents the
// renewed certificate after a renewal, and a node cannot pose as the
// server to another node.
func TestNodeServesOverMutualTLS(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	n, _ := f.join(t, "web-1", api.RoleAgent)
	peer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := IdentityOf(r.TLS.VerifiedChains[0][0])
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "%s %s", id.Name, id.Role)
	})
	nodeURL := serve(t, peer, n.ServerTLSConfig())
	serverCert, err := f.ca.IssueServer([]string{"fleet.test"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	call := func(cfg *tls.Config) (string, string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, nodeURL+"/", nil)
		resp, err := c.Do(req)
		if err != nil {
			return "", "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
	}
	asServer := func() *tls.Config {
		return &tls.Config{RootCAs: f.ca.pool, Time: f.clock.Now, ServerName: "web-1", Certificates: []tls.Certificate{serverCert}}
	}
	body, serial, err := call(asServer())
	if err != nil || body != "fleet.test server" || serial != n.Certificate().SerialNumber.String() {
		t.Fatalf("the server calling the node: %q, node serial %s, %v", body, serial, err)
	}
	if _, _, err := call(&tls.Config{RootCAs: f.ca.pool, Time: f.clock.Now, ServerName: "web-1"}); err == nil {
		t.Fatal("the node answered a caller without a certificate")
	}
	other, _ := f.join(t, "web-2", api.RoleAgent)
	cfg := other.ClientTLSConfig()
	cfg.ServerName = "web-1"
	if _, _, err := call(cfg); err == nil || !strings.Contains(err.Error(), "not the fleet server's") {
		t.Fatalf("a node's client config accepted another node as the server: %v", err)
	}

	f.clock.Add(17 * time.Hour)
	if err := n.Renew(ctx, f.url); err != nil {
		t.Fatal(err)
	}
	if _, serial, err := call(asServer()); err != nil || serial != n.Certificate().SerialNumber.String() {
		t.Fatalf("after renewal the node presents %s (%v), want %s", serial, err, n.Certificate().SerialNumber)
	}
}

// A join to an IP address checks it against the server certificate's IP
// addresses (Go's check is skipped for an address, which is sent with no
// server name): a certificate from the pinned CA for other addresses is
// refused, naming the address dialled and the certificate's names.
func TestJoinByAddressChecksTheIPSANs(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	cfg, err := ServerTLSConfig(f.ca, []string{"fleet.test", "10.9.8.7"})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := serve(t, f.srv, cfg) // https://127.0.0.1:port, not in the certificate
	dir := filepath.Join(t.TempDir(), "n")
	tok := f.token(t, api.RoleAgent)
	_, err = Join(ctx, elsewhere, tok, "web-1", dir, WithClock(f.clock.Now))
	if !errors.Is(err, ErrWrongCA) || !strings.Contains(err.Error(), "127.0.0.1") ||
		!strings.Contains(err.Error(), "10.9.8.7") || !strings.Contains(err.Error(), "fleet.test") {
		t.Fatalf("join to an address the certificate does not hold: %v, want ErrWrongCA naming 127.0.0.1 and the certificate's 10.9.8.7, fleet.test", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused join left node.key: %v", err)
	}
	// The token was not sent: it joins at the fleet's own address, whose
	// certificate holds 127.0.0.1.
	if _, err := Join(ctx, f.url, tok, "web-1", dir, WithClock(f.clock.Now)); err != nil {
		t.Fatalf("join at an address the certificate holds: %v", err)
	}
}

// A pinned transport dials with the transport's own DialContext (a lab
// namespace's, a Unix socket's) and checks the name asked for, not the
// address reached.
func TestPinTransportUsesItsDialer(t *testing.T) {
	f := newFleet(t)
	ctx := testenv.Context(t, time.Minute)
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	var dialled []string
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialled = append(dialled, addr)
		var d net.Dialer
		return d.DialContext(ctx, network, u.Host) // fleet.test resolves nowhere
	}}
	pinTransport(tr, f.ca.Pin(), f.clock.Now)
	defer tr.CloseIdleConnections()
	get := func(host string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(host, u.Port())+"/v1/whoami", nil)
		if err != nil {
			return err
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get("fleet.test"); err != nil {
		t.Fatalf("GET by the certificate's name through the transport's dialer: %v", err)
	}
	if len(dialled) != 1 || dialled[0] != net.JoinHostPort("fleet.test", u.Port()) {
		t.Fatalf("the transport's dialer was asked for %v", dialled)
	}
	if err := get("other.test"); !errors.Is(err, ErrWrongCA) || !strings.Contains(err.Error(), "other.test") {
		t.Fatalf("GET by a name the certificate does not hold: %v, want ErrWrongCA naming it", err)
	}
}
