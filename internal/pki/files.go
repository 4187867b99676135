package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// FileError refuses a file of the CA or of a node: Path names it and Err
// says what is wrong with it (missing, damaged, not matching its key, too
// open). Nothing is ever regenerated in its place: the operator decides.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

func fileErr(path string, format string, args ...any) error {
	return &FileError{Path: path, Err: fmt.Errorf(format, args...)}
}

// Option changes a default of LoadOrCreateCA, Join or LoadNode.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock makes now the clock for issuing, expiry and TLS verification
// (tests use it to move through lifetimes without waiting). Default
// time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// File modes of the directories and files this package writes.
const (
	dirMode  fs.FileMode = 0o700
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

// prepareDir creates dir (0700) if needed. An existing directory that
// others may read or write is refused: it holds a private key.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return checkDir(dir)
}

// checkDir refuses a dir that is missing, not a directory, or open to
// others.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fileErr(dir, "missing")
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fileErr(dir, "not a directory")
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fileErr(dir, "mode %04o, want 0700: the directory holds a private key (chmod 700 %s)", fi.Mode().Perm(), dir)
	}
	return nil
}

// exists reports whether path exists; an error other than "not there" is
// returned.
func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// onePEM decodes the single PEM block of type typ that data must hold,
// with nothing but white space around it.
func onePEM(data []byte, typ string) ([]byte, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty")
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block (damaged or truncated)")
	}
	if block.Type != typ {
		return nil, fmt.Errorf("PEM block %q, want %q", block.Type, typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("data after the %s block (damaged, or more than one block)", typ)
	}
	return block.Bytes, nil
}

// readKeyFile reads the ECDSA P-256 private key at path. The file must be
// a regular file that only its owner can read (0600 or stricter).
func readKeyFile(path string) (*ecdsa.PrivateKey, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileErr(path, "missing")
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fileErr(path, "not a regular file")
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fileErr(path, "mode %04o, want 0600: a private key must not be readable by others (chmod 600 %s)", perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	der, err := onePEM(data, "PRIVATE KEY")
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	key, err := parseECKey(der)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return key, nil
}

// parseECKey parses a PKCS#8 ECDSA P-256 private key, the only kind the
// fleet's keys are.
func parseECKey(der []byte) (*ecdsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#8 private key (damaged): %v", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("a %T key, want ECDSA P-256", k)
	}
	return key, nil
}

// readCertFile reads the one certificate at path.
func readCertFile(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileErr(path, "missing")
	}
	if err != nil {
		return nil, err
	}
	der, err := onePEM(data, "CERTIFICATE")
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fileErr(path, "not a certificate (damaged): %v", err)
	}
	return cert, nil
}

// writeKeyFile writes key to path as PKCS#8 PEM, mode 0600, atomically.
func writeKeyFile(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key for %s: %w", path, err)
	}
	return atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), keyMode)
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// matches reports whether cert carries the public half of key.
func matches(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && key.PublicKey.Equal(pub)
}
