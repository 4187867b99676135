package pki

import (
	"bytes"
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
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// ErrWrongCA refuses a server whose certificate does not come from the CA
// pinned in the join token: another server, or someone in between.
var ErrWrongCA = errors.New("the server's certificate is not from the fleet CA pinned in the join token")

// Node is a joined node's identity: its key, its current certificate and
// the fleet CA, kept in a directory (see the package doc for the files).
// It is safe for concurrent use; Renew swaps the certificate that its TLS
// configurations present.
type Node struct {
	dir   string
	key   *ecdsa.PrivateKey
	ca    *x509.Certificate
	caPEM []byte
	pool  *x509.CertPool
	now   func() time.Time
	mu    sync.Mutex
	cert  *tls.Certificate // current; replaced whole, never modified
	id    Identity
}

func (n *Node) paths() (key, cert, ca string) {
	return filepath.Join(n.dir, "node.key"), filepath.Join(n.dir, "node.crt"), filepath.Join(n.dir, "ca.crt")
}

// Join joins the fleet of the server at serverURL (https://host:port) as
// name, with the one-time token, and keeps the result in dir (made 0700).
// The key is made here and never sent. The server's certificate must chain
// to a CA whose pin is the token's, else the error wraps ErrWrongCA and
// nothing is sent; the answer must hold a certificate for this key and
// name from that CA. Only then are node.key (0600), ca.crt and node.crt
// written. A dir that already holds node.key is refused: a node joins
// once; to join again, move the directory away.
func Join(ctx context.Context, serverURL, token, name, dir string, opts ...Option) (*Node, error) {
	o := buildOptions(opts)
	tok, err := ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	u, err := url.Parse(serverURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("join: server URL %q: want https://host:port", serverURL)
	}
	if err := prepareDir(dir); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	n := &Node{dir: dir, now: o.now}
	keyPath, certPath, caPath := n.paths()
	if there, err := exists(keyPath); err != nil || there {
		if err == nil {
			err = fileErr(keyPath, "exists: this host has joined already (move %s away to join again)", dir)
		}
		return nil, fmt.Errorf("join: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	csr, err := makeCSR(key, name)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	tr := &http.Transport{}
	pinTransport(tr, tok.Pin, o.now)
	client := &http.Client{Transport: tr}
	defer client.CloseIdleConnections()
	var nc api.NodeCertificate
	if err := post(ctx, client, serverURL, "/v1/join", api.JoinRequest{Token: token, Name: name, CSR: string(csr)}, &nc); err != nil {
		return nil, fmt.Errorf("join %s: %w", serverURL, err)
	}
	ca, err := parseCAAnswer(nc.CA, tok.Pin)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", serverURL, err)
	}
	n.key, n.ca, n.caPEM, n.pool = key, ca, certPEM(ca.Raw), poolOf(ca)
	cert, err := n.checkIssued([]byte(nc.Certificate), Identity{Name: name})
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", serverURL, err)
	}
	// The certificate last: LoadNode refuses a directory without it, so a
	// join cut short is never taken for a joined node.
	if err := writeKeyFile(keyPath, key); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if err := atomicfile.Write(caPath, n.caPEM, certMode); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if err := atomicfile.Write(certPath, certPEM(cert.Leaf.Raw), certMode); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	n.install(cert)
	return n, nil
}

// LoadNode loads the node kept in dir by Join. A missing, damaged or
// loosely permissioned file, a certificate that does not match the key or
// does not come from the CA in ca.crt is refused with a *FileError naming
// the file. An expired certificate loads (Node.Expired tells): only a new
// join can replace it.
func LoadNode(dir string, opts ...Option) (*Node, error) {
	o := buildOptions(opts)
	if err := checkDir(dir); err != nil {
		return nil, fmt.Errorf("load node: %w", err)
	}
	n := &Node{dir: dir, now: o.now}
	keyPath, certPath, caPath := n.paths()
	key, err := readKeyFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load node: %w", err)
	}
	ca, err := readCertFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("load node: %w", err)
	}
	if !ca.IsCA || ca.CheckSignatureFrom(ca) != nil {
		return nil, fmt.Errorf("load node: %w", fileErr(caPath, "not a self-signed CA certificate"))
	}
	leaf, err := readCertFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("load node: %w", err)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("load node: %w", fileErr(certPath, "not signed by the CA in %s: %v", caPath, err))
	}
	if !matches(leaf, key) {
		return nil, fmt.Errorf("load node: %w", fileErr(keyPath, "does not match the certificate %s (their public keys differ)", certPath))
	}
	id, err := IdentityOf(leaf)
	if err != nil || !id.Role.Valid() {
		return nil, fmt.Errorf("load node: %w", fileErr(certPath, "not a node certificate (%v, role %q)", err, id.Role))
	}
	n.key, n.ca, n.caPEM, n.pool = key, ca, certPEM(ca.Raw), poolOf(ca)
	n.install(&tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf})
	return n, nil
}

func poolOf(ca *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca)
	return p
}

func (n *Node) install(cert *tls.Certificate) {
	id, _ := IdentityOf(cert.Leaf)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cert, n.id = cert, id
}

func (n *Node) current() *tls.Certificate {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cert
}

// Identity returns the node's name and role.
func (n *Node) Identity() Identity {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.id
}

// Certificate returns the node's current certificate. The caller must not
// modify it.
func (n *Node) Certificate() *x509.Certificate { return n.current().Leaf }

// Expired reports whether the current certificate has expired.
func (n *Node) Expired() bool { return n.now().After(n.current().Leaf.NotAfter) }

// ClientTLSConfig returns a TLS configuration for calling the fleet server:
// the node's current certificate (the latest renewal's, at each
// handshake), the server's certificate verified against the fleet CA and
// the host name, and refused unless it has role server, so a node cannot
// pose as the server to another.
func (n *Node) ClientTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    n.pool,
		Time:       n.now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return n.current(), nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			if id, err := IdentityOf(cs.PeerCertificates[0]); err != nil || id.Role != api.RoleServer {
				return fmt.Errorf("the peer's certificate (%q) is not the fleet server's", cs.PeerCertificates[0].Subject.CommonName)
			}
			return nil
		},
	}
}

// ServerTLSConfig returns a TLS configuration for the node's own API: the
// node's current certificate, and a client certificate from the fleet CA
// required and verified at the handshake (any role; the handler decides
// with IdentityOf on the verified chain).
func (n *Node) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  n.pool,
		Time:       n.now,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return n.current(), nil
		},
	}
}

// Renew asks the server at serverURL for a new certificate for the node's
// key and name, over mutual TLS with the current one, then writes
// node.crt (atomically) and swaps it into the node's TLS configurations:
// connections already open are not touched, new handshakes present the
// new certificate. On error nothing changes.
func (n *Node) Renew(ctx context.Context, serverURL string) error {
	id := n.Identity()
	csr, err := makeCSR(n.key, id.Name)
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	// A client of its own: a renewal comes once in hours, no connection is
	// worth keeping until the next.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: n.ClientTLSConfig()}}
	defer client.CloseIdleConnections()
	var nc api.NodeCertificate
	if err := post(ctx, client, serverURL, "/v1/renew", api.RenewRequest{CSR: string(csr)}, &nc); err != nil {
		return fmt.Errorf("renew at %s: %w", serverURL, err)
	}
	if !bytes.Equal(bytes.TrimSpace([]byte(nc.CA)), bytes.TrimSpace(n.caPEM)) {
		return fmt.Errorf("renew at %s: the server answered with another CA certificate", serverURL)
	}
	cert, err := n.checkIssued([]byte(nc.Certificate), id)
	if err != nil {
		return fmt.Errorf("renew at %s: %w", serverURL, err)
	}
	_, certPath, _ := n.paths()
	if err := atomicfile.Write(certPath, certPEM(cert.Leaf.Raw), certMode); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	n.install(cert)
	return nil
}

// checkIssued checks a certificate the server issued to this node: from
// the node's CA, for its key, named want.Name, with want.Role (any node
// role when empty), valid now.
func (n *Node) checkIssued(certPEMData []byte, want Identity) (*tls.Certificate, error) {
	der, err := onePEM(certPEMData, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: n.pool, CurrentTime: n.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if !matches(leaf, n.key) {
		return nil, errors.New("issued certificate: not for this node's key")
	}
	id, err := IdentityOf(leaf)
	if err != nil || id.Name != want.Name || !id.Role.Valid() || (want.Role != "" && id.Role != want.Role) {
		return nil, fmt.Errorf("issued certificate: names %q role %q, want %q", leaf.Subject.CommonName, id.Role, want.Name)
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: n.key, Leaf: leaf}, nil
}

// PinTransport makes tr's https connections (tr.DialTLSContext) accept
// only a fleet server's certificate from the CA whose pin is pin
// ("sha256:<64 lower-case hex>", as CA.Pin prints it and join tokens carry
// it), valid for the host dialled: a name among the certificate's DNS
// names, an IP address among its IP addresses; connections are made with
// tr.DialContext when set. It is what a join checks,
// and what the admin client checks of an https admin API (--ca-pin). A
// malformed pin is an error, and tr is left as it was.
func PinTransport(tr *http.Transport, pin string) error {
	hexPin, ok := strings.CutPrefix(pin, "sha256:")
	if raw, err := hex.DecodeString(hexPin); !ok || err != nil || len(raw) != sha256.Size || strings.ToLower(hexPin) != hexPin {
		return fmt.Errorf("CA pin %q: want sha256: and 64 lower-case hex characters (shoal server prints it)", pin)
	}
	pinTransport(tr, pin, time.Now)
	return nil
}

func pinTransport(tr *http.Transport, pin string, now func() time.Time) {
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		dial := tr.DialContext // the caller's, as it is at the dial
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, &tls.Config{
			MinVersion: tls.VersionTLS13,
			ServerName: host, // sent as SNI only when it is a name
			// The chain is checked against the pinned CA in
			// VerifyConnection: the client has no CA to hand to
			// RootCAs, only its pin.
			InsecureSkipVerify: true,
			VerifyConnection:   func(cs tls.ConnectionState) error { return verifyPinned(cs, pin, host, now()) },
		})
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
}

// verifyPinned checks, for a join, that the server's chain holds a CA
// with the pinned key and that the leaf is a current fleet server
// certificate from it for host, the name or IP address dialled.
func verifyPinned(cs tls.ConnectionState, pin, host string, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: the server sent no certificate", ErrWrongCA)
	}
	var ca *x509.Certificate
	for _, c := range cs.PeerCertificates[1:] {
		if pinOf(c) == pin && c.IsCA && c.CheckSignatureFrom(c) == nil {
			ca = c
			break
		}
	}
	leaf := cs.PeerCertificates[0]
	if ca == nil {
		return fmt.Errorf("%w: %s presented %q issued by %q, and no CA with pin %s", ErrWrongCA,
			host, leaf.Subject.CommonName, leaf.Issuer.CommonName, pin)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(ca), CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("%w: %w", ErrWrongCA, err)
	}
	// Checked apart from the chain: Verify skips it for an empty name.
	if err := leaf.VerifyHostname(host); err != nil {
		return fmt.Errorf("%w: the server certificate %q is for %s, not %s, the address dialled (%w)",
			ErrWrongCA, leaf.Subject.CommonName, sansOf(leaf), host, err)
	}
	if id, err := IdentityOf(leaf); err != nil || id.Role != api.RoleServer {
		return fmt.Errorf("%w: %q is not the fleet server's certificate", ErrWrongCA, leaf.Subject.CommonName)
	}
	return nil
}

// sansOf lists c's subject alternative names, IP addresses and DNS names.
func sansOf(c *x509.Certificate) string {
	var sans []string
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, c.DNSNames...)
	if len(sans) == 0 {
		return "no name or IP address"
	}
	return strings.Join(sans, ", ")
}

// parseCAAnswer parses the CA certificate a join answer holds and checks
// it against the token's pin.
func parseCAAnswer(caPEM, pin string) (*x509.Certificate, error) {
	der, err := onePEM([]byte(caPEM), "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if pinOf(ca) != pin || !ca.IsCA {
		return nil, fmt.Errorf("%w: the answer's CA certificate has pin %s", ErrWrongCA, pinOf(ca))
	}
	return ca, nil
}

func makeCSR(key *ecdsa.PrivateKey, name string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// post sends body as JSON to base+path and decodes a 200 answer into out;
// any other status is an error carrying the server's message.
func post(ctx context.Context, client *http.Client, base, path string, body, out any) error {
	enc, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+path, bytes.NewReader(enc))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(data))
		}
		return &RefusedError{Status: resp.StatusCode, Message: eb.Error}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	return nil
}

// RefusedError is a server's refusal of a join or renewal: its HTTP status
// and message.
type RefusedError struct {
	Status  int
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused by the server (%d %s): %s", e.Status, http.StatusText(e.Status), e.Message)
}
