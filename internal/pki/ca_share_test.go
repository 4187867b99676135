package pki

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestInstallCA: a CA exported (CertificatePEM, KeyPEM) and installed in
// another dir loads there with the same pin; installing it again is a
// no-op; a dir holding another CA, or half of one, is refused and kept; a
// key that is not the certificate's is refused before anything is written.
func TestInstallCA(t *testing.T) {
	ca, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	for range 2 {
		pin, err := InstallCA(dir, ca.CertificatePEM(), key)
		if err != nil || pin != ca.Pin() {
			t.Fatalf("InstallCA = %q, %v; want pin %s", pin, err, ca.Pin())
		}
	}
	got, err := LoadOrCreateCA(dir)
	if err != nil || got.Pin() != ca.Pin() {
		t.Fatalf("installed CA loads as %v, %v", got, err)
	}

	other, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	otherDir := filepath.Join(t.TempDir(), "ca")
	if _, err := LoadOrCreateCA(otherDir); err != nil {
		t.Fatal(err)
	}
	if _, err := InstallCA(otherDir, ca.CertificatePEM(), key); !errors.Is(err, ErrOtherCA) {
		t.Fatalf("install over another CA: %v, want ErrOtherCA", err)
	}
	half := filepath.Join(t.TempDir(), "ca")
	if err := os.MkdirAll(half, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(half, "ca.crt"), ca.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	var fe *FileError
	if _, err := InstallCA(half, ca.CertificatePEM(), key); !errors.As(err, &fe) {
		t.Fatalf("install over half a CA: %v, want a *FileError", err)
	}
	otherKey, _ := other.KeyPEM()
	fresh := filepath.Join(t.TempDir(), "ca")
	if _, err := InstallCA(fresh, ca.CertificatePEM(), otherKey); err == nil {
		t.Fatal("a key of another CA was installed")
	}
	if _, err := os.Stat(filepath.Join(fresh, "ca.key")); !os.IsNotExist(err) {
		t.Fatalf("a refused install wrote %s (%v)", fresh, err)
	}
}
