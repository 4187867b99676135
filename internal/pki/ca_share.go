package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/shoal-dev/shoal/internal/atomicfile"
)

// KeyPEM returns the CA's private key as PKCS#8 PEM, as ca.key holds it:
// for another server of the same cluster only (InstallCA), never to log.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ErrOtherCA is returned by InstallCA when dir holds another CA already.
var ErrOtherCA = errors.New("holds another fleet CA")

// InstallCA writes the CA of certPEM and keyPEM (another server's, from
// CA.CertificatePEM and KeyPEM) into dir as LoadOrCreateCA keeps one, so
// that this server shares it. The pair is checked first (a CA
// certificate, self-signed, its key). A dir that holds that same CA
// already is left as it is; one that holds another CA, or half of one, is
// refused (an error wrapping ErrOtherCA, or a *FileError) and nothing is
// written. It returns the installed CA's pin.
func InstallCA(dir string, certPEM, keyPEM []byte) (pin string, err error) {
	certDER, err := onePEM(certPEM, "CERTIFICATE")
	if err != nil {
		return "", fmt.Errorf("install fleet CA: certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return "", fmt.Errorf("install fleet CA: certificate: %w", err)
	}
	keyDER, err := onePEM(keyPEM, "PRIVATE KEY")
	if err != nil {
		return "", fmt.Errorf("install fleet CA: key: %w", err)
	}
	key, err := parseECKey(keyDER)
	if err != nil {
		return "", fmt.Errorf("install fleet CA: key: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.CheckSignatureFrom(cert) != nil {
		return "", errors.New("install fleet CA: the certificate is not a self-signed CA certificate")
	}
	if !matches(cert, key) {
		return "", errors.New("install fleet CA: the key does not match the certificate")
	}
	pin = pinOf(cert)
	if err := prepareDir(dir); err != nil {
		return "", fmt.Errorf("install fleet CA: %w", err)
	}
	keyPath, certPath := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
	keyThere, err := exists(keyPath)
	if err != nil {
		return "", fmt.Errorf("install fleet CA: %w", err)
	}
	certThere, err := exists(certPath)
	if err != nil {
		return "", fmt.Errorf("install fleet CA: %w", err)
	}
	switch {
	case keyThere && certThere:
		have, err := readCertFile(certPath)
		if err != nil {
			return "", fmt.Errorf("install fleet CA: %w", err)
		}
		if !bytes.Equal(have.Raw, cert.Raw) {
			return "", fmt.Errorf("install fleet CA: %s %w (pin %s; the cluster's is %s)", dir, ErrOtherCA, pinOf(have), pin)
		}
		return pin, nil
	case keyThere || certThere:
		return "", fmt.Errorf("install fleet CA: %w", fileErr(dir, "holds half of a CA (ca.key or ca.crt alone): move it away to join"))
	}
	// The key first, as createCA does: a crash between the writes leaves
	// a key alone, which the next start refuses by name.
	if err := writeKeyFile(keyPath, key); err != nil {
		return "", fmt.Errorf("install fleet CA: %w", err)
	}
	if err := atomicfile.Write(certPath, certPEM, certMode); err != nil {
		return "", fmt.Errorf("install fleet CA: %w", err)
	}
	return pin, nil
}
