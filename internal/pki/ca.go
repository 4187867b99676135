package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// Lifetimes.
const (
	// CALifetime is the validity of a new CA certificate.
	CALifetime = 10 * 365 * 24 * time.Hour
	// DefaultNodeTTL is the lifetime of a node's certificate when the
	// server asks for none: a day, renewed after 16 hours (Renewer), so a
	// stolen certificate of a removed node is useless a day later at most.
	DefaultNodeTTL = 24 * time.Hour
	// DefaultServerTTL is the lifetime of the certificate of the server's
	// fleet listener (ServerTLSConfig re-issues it at two thirds).
	DefaultServerTTL = 30 * 24 * time.Hour
	// backdate is how far before issuance a certificate becomes valid, so
	// that a peer whose clock is a little behind accepts it.
	backdate = time.Minute
)

// Identity is who a node certificate names: the node's name (the subject's
// common name and its one DNS name) and its role (the subject's
// organizational unit).
type Identity struct {
	Name string
	Role api.NodeRole
}

// CA is the fleet's certificate authority. It is safe for concurrent use;
// it never changes after LoadOrCreateCA.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
	now     func() time.Time
}

// LoadOrCreateCA loads the CA kept in dir (ca.key, ca.crt), or creates it
// there at the first start, when neither file exists: a new ECDSA P-256
// key and a self-signed certificate valid for CALifetime, named "Shoal
// fleet CA <random id>", dir made 0700, ca.key written 0600 and ca.crt
// 0644, each atomically. Any other state is refused with a *FileError
// naming the file: one file without the other, a damaged or truncated
// file, a key that does not match the certificate, a key file or
// directory that others may read, a certificate that is not a CA or has
// expired. Nothing is ever regenerated over an existing file.
func LoadOrCreateCA(dir string, opts ...Option) (*CA, error) {
	o := buildOptions(opts)
	if err := prepareDir(dir); err != nil {
		return nil, fmt.Errorf("fleet CA: %w", err)
	}
	keyPath, certPath := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
	keyThere, err := exists(keyPath)
	if err != nil {
		return nil, fmt.Errorf("fleet CA: %w", err)
	}
	certThere, err := exists(certPath)
	if err != nil {
		return nil, fmt.Errorf("fleet CA: %w", err)
	}
	switch {
	case !keyThere && !certThere:
		ca, err := createCA(keyPath, certPath, o.now)
		if err != nil {
			return nil, fmt.Errorf("fleet CA: create: %w", err)
		}
		return ca, nil
	case keyThere && !certThere:
		return nil, fmt.Errorf("fleet CA: %w", fileErr(certPath,
			"missing while %s exists: restore it from a backup, or move both away to make a new CA (every node must then join again)", keyPath))
	case !keyThere && certThere:
		return nil, fmt.Errorf("fleet CA: %w", fileErr(keyPath,
			"missing while %s exists: restore it from a backup, or move both away to make a new CA (every node must then join again)", certPath))
	}
	key, err := readKeyFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("fleet CA: %w", err)
	}
	cert, err := readCertFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("fleet CA: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("fleet CA: %w", fileErr(certPath, "not a CA certificate"))
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("fleet CA: %w", fileErr(certPath, "not self-signed: %v", err))
	}
	if !matches(cert, key) {
		return nil, fmt.Errorf("fleet CA: %w", fileErr(keyPath, "does not match the certificate %s (their public keys differ)", certPath))
	}
	if now := o.now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("fleet CA: %w", fileErr(certPath, "expired at %s", cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	return newCA(cert, key, o.now), nil
}

func newCA(cert *x509.Certificate, key *ecdsa.PrivateKey, now func() time.Time) *CA {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, certPEM: certPEM(cert.Raw), key: key, pool: pool, now: now}
}

func createCA(keyPath, certPath string, now func() time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Shoal fleet CA " + hex.EncodeToString(id), Organization: []string{"Shoal"}},
		NotBefore:             t.Add(-backdate),
		NotAfter:              t.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	// The key first: a crash between the two writes leaves a key without a
	// certificate, which the next start refuses (never a certificate
	// whose key is lost without a word).
	if err := writeKeyFile(keyPath, key); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(certPath, certPEM(der), certMode); err != nil {
		return nil, err
	}
	return newCA(cert, key, now), nil
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// Certificate returns the CA's certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertificatePEM returns the CA's certificate as PEM.
func (ca *CA) CertificatePEM() []byte { return slices.Clone(ca.certPEM) }

// Pin is "sha256:<hex>" of the CA certificate's SubjectPublicKeyInfo: the
// value a joining host checks the server against (join tokens carry it).
func (ca *CA) Pin() string { return pinOf(ca.cert) }

func pinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// IssueServer issues a certificate for the server's fleet listener, for
// names (DNS names and IP addresses; at least one), valid for ttl
// (DefaultServerTTL when 0) and never past the CA's own expiry. The key is
// made here and stays in memory. The certificate carries role "server",
// for server and client authentication (the server also calls its nodes),
// and the returned chain ends with the CA certificate, which a joining
// host needs to check the pin.
func (ca *CA) IssueServer(names []string, ttl time.Duration) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, errors.New("issue server certificate: no names")
	}
	var dns []string
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if err := CheckName(n); err != nil {
			return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
		}
		dns = append(dns, n)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	leaf, err := ca.sign(&key.PublicKey, Identity{Name: names[0], Role: api.RoleServer}, dns, ips, ttl, DefaultServerTTL)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// SignCSR signs the PEM certificate signing request csrPEM for the node
// id, valid for ttl (DefaultNodeTTL when 0). The request must be a single
// well-formed CERTIFICATE REQUEST block, signed by its own ECDSA P-256 key
// (checked), and name id.Name as its common name; id.Role must be agent
// or lb. The certificate names id.Name as common name and only DNS name,
// id.Role as organizational unit, and allows client and server
// authentication (a node also serves its own API over mutual TLS). It
// returns the certificate as PEM.
func (ca *CA) SignCSR(csrPEM []byte, id Identity, ttl time.Duration) ([]byte, error) {
	if err := CheckName(id.Name); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if !id.Role.Valid() {
		return nil, fmt.Errorf("sign: role %q is not agent or lb", id.Role)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if csr.Subject.CommonName != id.Name {
		return nil, fmt.Errorf("sign: the request names %q, not %q", csr.Subject.CommonName, id.Name)
	}
	leaf, err := ca.sign(csr.PublicKey, id, []string{id.Name}, nil, ttl, DefaultNodeTTL)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return certPEM(leaf.Raw), nil
}

// parseCSR decodes and checks a PEM signing request.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	der, err := onePEM(csrPEM, "CERTIFICATE REQUEST")
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request: bad signature: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("certificate request: a %T key, want ECDSA P-256", csr.PublicKey)
	}
	return csr, nil
}

func (ca *CA) sign(pub any, id Identity, dns []string, ips []net.IP, ttl, def time.Duration) (*x509.Certificate, error) {
	if ttl < 0 {
		return nil, fmt.Errorf("lifetime %s is negative", ttl)
	}
	if ttl == 0 {
		ttl = def
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	t := ca.now()
	notAfter := t.Add(ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(t) {
		return nil, fmt.Errorf("the CA expired at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.Name, OrganizationalUnit: []string{string(id.Role)}, Organization: []string{"Shoal"}},
		NotBefore:    t.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// CheckName reports whether name can name a node: 1 to 63 characters of
// a-z, 0-9, '.' and '-', starting and ending with a letter or digit.
func CheckName(name string) error {
	if len(name) < 1 || len(name) > 63 {
		return fmt.Errorf("node name %q: %d characters, want 1 to 63", name, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && c != '.' && c != '-' {
			return fmt.Errorf("node name %q: character %q at %d; only a-z, 0-9, '.' and '-'", name, c, i)
		}
		if !alnum && (i == 0 || i == len(name)-1) {
			return fmt.Errorf("node name %q: must start and end with a letter or digit", name)
		}
	}
	return nil
}

// IdentityOf reads the identity of a certificate issued by the fleet CA
// (the caller has verified the chain): its common name and role.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if len(cert.Subject.OrganizationalUnit) != 1 {
		return Identity{}, fmt.Errorf("certificate %q has %d roles, want 1", cert.Subject.CommonName, len(cert.Subject.OrganizationalUnit))
	}
	id := Identity{Name: cert.Subject.CommonName, Role: api.NodeRole(cert.Subject.OrganizationalUnit[0])}
	if !id.Role.Valid() && id.Role != api.RoleServer {
		return Identity{}, fmt.Errorf("certificate %q has unknown role %q", id.Name, id.Role)
	}
	return id, nil
}
