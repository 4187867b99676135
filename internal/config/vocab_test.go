package config

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/health"
)

// lbRenames are the lb.yaml keys renamed so that lb.yaml and shoal.yaml
// name the same things the same way: each file is written with the new
// key and with the old one, at the same place.
var lbRenames = []struct {
	name     string
	neu, old string // the same file, with the new and the old key
	warning  string // the warning the old key gives
	both     string // the file with both keys
	bothErr  string // and its error
}{
	{
		name:    "listeners[].addr is listen",
		neu:     "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\n",
		old:     "listeners:\n  - name: web\n    addr: 127.0.0.1:8080\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\n",
		warning: `lb.yaml:3:5: listeners[0].addr: "addr" is a deprecated name: rename it to "listen" (it means the same)`,
		both:    "listeners:\n  - name: web\n    listen: 127.0.0.1:8080\n    addr: 127.0.0.1:8081\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\n",
		bothErr: `lb.yaml:4:5: listeners[0].listen: set twice: as "listen" at 3:5 and under its old name "addr" at 4:5; keep "listen" only`,
	},
	{
		name:    "admin.addr is listen",
		neu:     "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\nadmin:\n  listen: 127.0.0.1:9090\n",
		old:     "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\nadmin:\n  addr: 127.0.0.1:9090\n",
		warning: `lb.yaml:5:3: admin.addr: "addr" is a deprecated name: rename it to "listen" (it means the same)`,
		both:    "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools: [{name: p}]\nadmin:\n  addr: 127.0.0.1:9090\n  listen: 127.0.0.1:9091\n",
		bothErr: `lb.yaml:6:3: admin.listen: set twice: as "listen" at 6:3 and under its old name "addr" at 5:3; keep "listen" only`,
	},
	{
		name: "pools[].health_check is health",
		neu: "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools:\n  - name: p\n    health:\n" +
			"      path: /healthz\n      host: app.local\n      interval: 3s\n      timeout: 1s\n      healthy_threshold: 1\n      unhealthy_threshold: 5\n      statuses: \"200,204\"\n      jitter: 0.1\n",
		old: "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools:\n  - name: p\n    health_check:\n" +
			"      path: /healthz\n      host: app.local\n      interval: 3s\n      timeout: 1s\n      healthy_threshold: 1\n      unhealthy_threshold: 5\n      statuses: \"200,204\"\n      jitter: 0.1\n",
		warning: `lb.yaml:5:5: pools[0].health_check: "health_check" is a deprecated name: rename it to "health" (it means the same)`,
		both:    "listeners: [{name: web, listen: ':80'}]\nroutes: [{name: r, pool: p}]\npools:\n  - name: p\n    health_check: {path: /a}\n    health: {path: /b}\n",
		bothErr: `lb.yaml:6:5: pools[0].health: set twice: as "health" at 6:5 and under its old name "health_check" at 5:5; keep "health" only`,
	},
}

// TestLBRenamedKeys: every renamed lb.yaml key loads under its new and its
// old name with the same result; the old name warns with file:line:col and
// the new key; both at once is an error naming both positions.
func TestLBRenamedKeys(t *testing.T) {
	for _, tc := range lbRenames {
		t.Run(tc.name, func(t *testing.T) {
			neu, err := ParseLB("lb.yaml", []byte(tc.neu))
			if err != nil {
				t.Fatalf("new key: %v", err)
			}
			old, err := ParseLB("lb.yaml", []byte(tc.old))
			if err != nil {
				t.Fatalf("old key: %v", err)
			}
			if len(neu.Warnings) != 0 {
				t.Errorf("new key warns: %v", neu.Warnings)
			}
			if len(old.Warnings) != 1 || old.Warnings[0].String() != tc.warning {
				t.Errorf("old key warnings = %q, want %q", old.Warnings, tc.warning)
			}
			old.Warnings = nil
			if !reflect.DeepEqual(neu, old) {
				t.Errorf("old key loads another configuration:\nnew %+v\nold %+v", neu, old)
			}

			_, err = ParseLB("lb.yaml", []byte(tc.both))
			var probs Problems
			if !errors.As(err, &probs) || len(probs) != 1 || probs[0].String() != tc.bothErr {
				t.Errorf("both keys: %v, want %q", err, tc.bothErr)
			}
		})
	}
}

// TestLBRenamedKeyKeepsValidation: a value under an old name is checked
// as under the new one, at the position of the value in the file.
func TestLBRenamedKeyKeepsValidation(t *testing.T) {
	src := "listeners:\n  - name: web\n    addr: nonsense\nroutes: [{name: r, pool: p}]\npools:\n  - name: p\n    health_check: {interval: 1s, timeout: 2s}\n"
	_, err := ParseLB("lb.yaml", []byte(src))
	for _, want := range []string{
		`lb.yaml:3:11: listeners[0].listen: invalid address "nonsense"`,
		`lb.yaml:7:43: pools[0].health.timeout: must be at most interval`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// TestAppStickySecretFile: balancer.sticky.secret_file in shoal.yaml is
// lb.yaml's sticky.secret_file: the key is read (trimmed) at load, signs
// the pool's cookies instead of the caller's key, and is never shipped.
func TestAppStickySecretFile(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	src := "app: web\nrun: {command: ./web}\nbalancer:\n  sticky:\n    cookie: sid\n    secret_file: keys/sticky.key\n"
	dir := writeFiles(t, map[string]string{"shoal.yaml": src, "keys/sticky.key": "  " + key + "\n"})
	a, err := Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(a.Balancer.Sticky.Secret()); got != key {
		t.Errorf("Secret() = %q, want %q", got, key)
	}
	if want := filepath.Join(dir, "keys", "sticky.key"); a.Balancer.Sticky.SecretFile != want {
		t.Errorf("SecretFile = %q, want %q", a.Balancer.Sticky.SecretFile, want)
	}
	if st := a.Balancer.PoolSticky([]byte("the store's own key, unused")); string(st.Secret) != key || st.Cookie != "sid" {
		t.Errorf("PoolSticky = %+v, want the file's key", st)
	}
	if !slices.Contains(a.Exclude(), filepath.Join(dir, "keys", "sticky.key")) {
		t.Errorf("Exclude() = %v lacks the sticky key", a.Exclude())
	}

	// Without secret_file the caller's key signs, and there is no file
	// to leave out.
	dir = writeFiles(t, map[string]string{"shoal.yaml": "app: web\nrun: {command: ./web}\nbalancer: {sticky: {cookie: sid}}\n"})
	a, err = Load(filepath.Join(dir, "shoal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Balancer.Sticky.Secret() != nil || string(a.Balancer.PoolSticky([]byte(key)).Secret) != key {
		t.Errorf("no secret_file: Secret() %q, PoolSticky %+v", a.Balancer.Sticky.Secret(), a.Balancer.PoolSticky([]byte(key)))
	}

	// A missing or short key is an error at the key, as in lb.yaml.
	for name, files := range map[string]map[string]string{
		"missing": {"shoal.yaml": src},
		"short":   {"shoal.yaml": src, "keys/sticky.key": "tooshort\n"},
	} {
		dir := writeFiles(t, files)
		_, err := Load(filepath.Join(dir, "shoal.yaml"))
		want := map[string]string{
			"missing": "shoal.yaml:6:18: balancer.sticky.secret_file: read sticky secret: open " + filepath.Join(dir, "keys", "sticky.key") + ": no such file or directory",
			"short":   "shoal.yaml:6:18: balancer.sticky.secret_file: secret in keys/sticky.key is 8 bytes; at least 16 are required",
		}[name]
		if err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

// TestAppHealthHost: health.host in shoal.yaml is lb.yaml's health.host:
// the checks of shoal up's instances send it as their Host header.
func TestAppHealthHost(t *testing.T) {
	dir := writeFiles(t, nil)
	a, err := Parse("shoal.yaml", []byte("app: web\nrun: {command: ./web}\nhealth: {path: /healthz, host: app.example.com}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	spec := a.Health.Spec()
	if err := spec.Validate(); err != nil || spec.Host != "app.example.com" {
		t.Fatalf("spec %+v, %v", spec, err)
	}
	hosts := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hosts <- r.Host + " " + r.URL.Path:
		default:
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok, detail := health.NewProber(spec, nil).Probe(ctx, strings.TrimPrefix(srv.URL, "http://")); !ok {
		t.Fatalf("probe failed: %s", detail)
	}
	if got := <-hosts; got != "app.example.com /healthz" {
		t.Errorf("the check sent %q, want Host app.example.com on /healthz", got)
	}

	_, err = Parse("shoal.yaml", []byte("app: web\nrun: {command: ./web}\nhealth:\n  host: a b\n"), dir)
	if err == nil || !strings.Contains(err.Error(), `shoal.yaml:4:9: health.host: invalid host "a b"`) {
		t.Errorf("invalid host: %v", err)
	}
}
