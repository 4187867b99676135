package pki

import (
	"crypto/sha256"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
)

func TestJoinTokenFormat(t *testing.T) {
	clock := newClock()
	ca, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "pki"), WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	s, rec, err := NewJoinToken(ca, api.RoleAgent, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^shoal-join-v1\.[a-z2-7]{16}\.[A-Za-z0-9_-]{43}\.[0-9a-f]{64}$`).MatchString(s) {
		t.Fatalf("token %q does not have the documented format", s)
	}
	tok, err := ParseToken(s)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tok.Secret)
	if tok.ID != rec.ID || tok.Pin != ca.Pin() || string(rec.SecretHash) != string(sum[:]) || tok.String() != s {
		t.Fatalf("parsed %+v from %q; record %+v", tok, s, rec)
	}
	if rec.Role != api.RoleAgent || rec.Used || !rec.Created.Equal(clock.Now()) || rec.Expires.Sub(rec.Created) != DefaultTokenTTL {
		t.Fatalf("record %+v", rec)
	}
	if strings.Contains(string(rec.SecretHash), string(tok.Secret)) {
		t.Fatal("the record holds the secret")
	}
	if _, _, err := NewJoinToken(ca, api.RoleServer, 0); err == nil {
		t.Error("a token for role server was made")
	}

	parts := strings.Split(s, ".")
	join := func(p ...string) string { return strings.Join(p, ".") }
	malformed := map[string]string{
		"empty":          "",
		"other version":  join("shoal-join-v2", parts[1], parts[2], parts[3]),
		"three fields":   join(parts[0], parts[1], parts[2]),
		"five fields":    s + ".x",
		"upper-case id":  join(parts[0], strings.ToUpper(parts[1]), parts[2], parts[3]),
		"short id":       join(parts[0], parts[1][:15], parts[2], parts[3]),
		"short secret":   join(parts[0], parts[1], parts[2][:42], parts[3]),
		"padded secret":  join(parts[0], parts[1], parts[2]+"=", parts[3]),
		"std base64":     join(parts[0], parts[1], strings.Repeat("+", 43), parts[3]),
		"upper-case pin": join(parts[0], parts[1], parts[2], strings.ToUpper(parts[3])),
		"short pin":      join(parts[0], parts[1], parts[2], parts[3][:62]),
	}
	for name, bad := range malformed {
		_, err := ParseToken(bad)
		if !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("%s: err = %v, want ErrTokenMalformed", name, err)
		}
		if err != nil && strings.Contains(err.Error(), parts[2]) {
			t.Errorf("%s: the error repeats the secret: %v", name, err)
		}
	}
}

func TestCheckTokenRefusalsAreDistinct(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	secret := []byte(strings.Repeat("s", 32))
	sum := sha256.Sum256(secret)
	rec := api.JoinToken{ID: "x", SecretHash: sum[:], Role: api.RoleAgent, Created: now, Expires: now.Add(time.Hour)}
	if err := checkToken(rec, secret, now.Add(time.Hour-time.Nanosecond)); err != nil {
		t.Fatalf("a good token refused: %v", err)
	}
	used := rec
	used.Used = true
	cases := []struct {
		name   string
		rec    api.JoinToken
		secret []byte
		at     time.Time
		want   error
	}{
		{"wrong secret", rec, []byte(strings.Repeat("t", 32)), now, ErrTokenSecret},
		{"short secret", rec, secret[:31], now, ErrTokenSecret},
		{"used", used, secret, now, ErrTokenUsed},
		{"expired", rec, secret, now.Add(time.Hour), ErrTokenExpired},
	}
	all := []error{ErrTokenMalformed, ErrTokenUnknown, ErrTokenSecret, ErrTokenUsed, ErrTokenExpired}
	for _, tc := range cases {
		err := checkToken(tc.rec, tc.secret, tc.at)
		for _, e := range all {
			if errors.Is(err, e) != (e == tc.want) {
				t.Errorf("%s: err = %v; want exactly %v", tc.name, err, tc.want)
			}
		}
	}
}
