package pki

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseToken: any string parses into a token whose String is the input
// (trimmed), or is refused with ErrTokenMalformed; never a panic.
func FuzzParseToken(f *testing.F) {
	f.Add("shoal-join-v1.abcdefghijklmnop." + strings.Repeat("A", 43) + "." + strings.Repeat("0", 64))
	f.Add("shoal-join-v1...")
	f.Add("shoal-join-v1.x.y.z")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrTokenMalformed) {
				t.Fatalf("ParseToken(%q) = %v, not ErrTokenMalformed", s, err)
			}
			return
		}
		if tok.String() != strings.TrimSpace(s) || len(tok.Secret) != 32 {
			t.Fatalf("ParseToken(%q) = %+v, which prints as %q", s, tok, tok.String())
		}
	})
}

// FuzzParseCSR: any bytes are a checked request or an error; never a panic.
func FuzzParseCSR(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if csr, err := parseCSR(b); err == nil && csr.CheckSignature() != nil {
			t.Fatal("parseCSR accepted a request with a bad signature")
		}
	})
}
