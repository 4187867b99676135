package acme

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// Files, under Config.Dir/<directory host>/ (mode 0700):
//
//	account.key     the ACME account's key (EC P-256, PEM "EC PRIVATE KEY"), 0600
//	<host>.pem      the host's certificate chain, leaf first, then its
//	                private key ("EC PRIVATE KEY"), 0600
//
// One directory per ACME directory's host, so an account and certificates
// of a staging CA are never mixed with the production CA's. Nothing is
// trusted blindly: a file that does not parse, a certificate whose key is
// not its own or that does not name its host, and a key file readable by
// others are refused with a *DamagedError naming the file.

// DamagedError is a file of the ACME storage that cannot be used. Moving
// it away makes the manager start afresh: a new account key, or a new
// certificate for that host.
type DamagedError struct {
	File   string
	Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("acme storage: %s: %s (move it away to obtain a new one)", e.File, e.Reason)
}

// storageDir is the directory of one ACME directory's files under base.
func storageDir(base, directory string) (string, error) {
	u, err := url.Parse(directory)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("acme directory %q: want an https URL", directory)
	}
	return filepath.Join(base, strings.ReplaceAll(u.Host, ":", "_")), nil
}

// prepareDir creates dir (0700) or checks that it is not open to others.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("acme storage: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("acme storage: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return &DamagedError{File: dir, Reason: fmt.Sprintf("mode %04o, want 0700: it holds private keys (chmod 700 %s)", fi.Mode().Perm(), dir)}
	}
	return nil
}

// readPrivate reads a file that must not be open to others; a missing
// file is (nil, nil).
func readPrivate(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("acme storage: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, &DamagedError{File: path, Reason: fmt.Sprintf("mode %04o, want 0600: it holds a private key (chmod 600 %s)", perm, path)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("acme storage: %w", err)
	}
	return b, nil
}

// loadOrCreateAccountKey returns the account key of dir, made and
// written at the first start.
func loadOrCreateAccountKey(dir string) (crypto.Signer, bool, error) {
	path := filepath.Join(dir, "account.key")
	b, err := readPrivate(path)
	if err != nil {
		return nil, false, err
	}
	if b != nil {
		k, err := parseKey(b)
		if err != nil {
			return nil, false, &DamagedError{File: path, Reason: err.Error()}
		}
		return k, false, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	pemKey, err := encodeKey(k)
	if err != nil {
		return nil, false, err
	}
	if err := atomicfile.Write(path, pemKey, 0o600); err != nil {
		return nil, false, fmt.Errorf("acme storage: write %s: %w", path, err)
	}
	return k, true, nil
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "EC PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("not one PEM block of type EC PRIVATE KEY")
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// certFile is the path of host's certificate: its chain (leaf first)
// and then its key, in one file so that a renewal replaces both at once.
func certFile(dir, host string) string { return filepath.Join(dir, host+".pem") }

// loadCert reads host's certificate, or (nil, nil) when it has none yet.
func loadCert(dir, host string) (*Cert, error) {
	path := certFile(dir, host)
	b, err := readPrivate(path)
	if err != nil || b == nil {
		return nil, err
	}
	var certPEM, keyPEM []byte
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, &DamagedError{File: path, Reason: "data after the last PEM block"}
			}
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			certPEM = append(certPEM, pem.EncodeToMemory(blk)...)
		case "EC PRIVATE KEY":
			keyPEM = pem.EncodeToMemory(blk)
		default:
			return nil, &DamagedError{File: path, Reason: fmt.Sprintf("unexpected PEM block %q", blk.Type)}
		}
	}
	if certPEM == nil || keyPEM == nil {
		return nil, &DamagedError{File: path, Reason: "want the certificate chain and an EC PRIVATE KEY"}
	}
	c, err := parseCert(host, certPEM, keyPEM)
	if err != nil {
		return nil, &DamagedError{File: path, Reason: err.Error()}
	}
	return c, nil
}

// parseCert checks a chain and its key for host and returns them as a
// Cert.
func parseCert(host string, certPEM, keyPEM []byte) (*Cert, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return nil, err
	}
	return &Cert{Names: slices.Clone(leaf.DNSNames), CertPEM: certPEM, KeyPEM: keyPEM,
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, nil
}

// saveCert replaces host's file atomically (mode 0600).
func saveCert(dir, host string, c *Cert) error {
	path := certFile(dir, host)
	data := append(slices.Clone(c.CertPEM), c.KeyPEM...)
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("acme storage: write %s: %w", path, err)
	}
	return nil
}
