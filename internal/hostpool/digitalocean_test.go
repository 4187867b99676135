package hostpool_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/hostpool"
	"github.com/shoal-dev/shoal/internal/hostpool/dotest"
	"github.com/shoal-dev/shoal/internal/testenv"
)

const secret = "dop_v1_0123456789abcdef-test-credential"

// startFake serves a fake DigitalOcean API on 127.0.0.1 for t.
func startFake(t *testing.T, o dotest.Options) (*dotest.Fake, *hostpool.DigitalOcean, string) {
	t.Helper()
	o.Token = secret
	f := dotest.New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := f.Serve(ln)
	t.Cleanup(f.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	do, err := hostpool.NewDigitalOcean(hostpool.DigitalOceanOptions{Token: secret, BaseURL: url, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return f, do, url
}

func TestDigitalOceanDroplets(t *testing.T) {
	var mu sync.Mutex
	booted := map[string]string{}
	f, do, _ := startFake(t, dotest.Options{Boot: func(_ context.Context, d godo.Droplet, ud string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		booted[d.Name] = ud
		return "10.0.0.5", nil
	}})
	ctx := context.Background()
	tag := hostpool.Tag("web")
	m, err := do.Create(ctx, hostpool.CreateSpec{Name: "web-1", Region: "nyc1", Size: "s-1vcpu-1gb", Image: "12345",
		UserData: "#!/bin/sh\n", Tags: []string{tag}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "web-1" || m.Region != "nyc1" || m.ID == "" || m.Created.IsZero() {
		t.Fatalf("created %+v", m)
	}
	if _, err := do.Create(ctx, hostpool.CreateSpec{Name: "other-1", Region: "nyc1", Size: "s", Image: "ubuntu-24-04-x64", Tags: []string{hostpool.Tag("other")}}); err != nil {
		t.Fatal(err)
	}
	var list []hostpool.Machine
	testenv.Eventually(t, 10*time.Second, func() error {
		list, err = do.List(ctx, tag)
		if err != nil {
			return err
		}
		if len(list) != 1 || list[0].IP != "10.0.0.5" || list[0].Status != "active" {
			return errors.New("web-1 not active yet")
		}
		return nil
	})
	if list[0].ID != m.ID {
		t.Errorf("listed %+v, want id %s", list[0], m.ID)
	}
	if err := do.AssignReservedIP(ctx, "203.0.113.7", m.ID); err != nil {
		t.Fatal(err)
	}
	if got := f.Assigned("203.0.113.7"); got == 0 || m.ID != strconv.Itoa(got) {
		t.Errorf("reserved ip points at %d, want %s", got, m.ID)
	}
	if err := do.Destroy(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := do.Destroy(ctx, m.ID); err != nil {
		t.Errorf("destroy of a droplet gone: %v", err)
	}
	if list, err = do.List(ctx, tag); err != nil || len(list) != 0 {
		t.Errorf("after destroy: %v %v", list, err)
	}
	st := f.Stats()
	if len(st.Leaks) != 0 || st.Unauthorized != 0 || st.Creates != 2 || st.Deletes != 1 {
		t.Errorf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if booted["web-1"] != "#!/bin/sh\n" {
		t.Errorf("booted with user-data %q", booted["web-1"])
	}
}

func TestDigitalOceanErrors(t *testing.T) {
	f, do, url := startFake(t, dotest.Options{})
	ctx := context.Background()
	f.Fail(1, http.StatusTooManyRequests)
	_, err := do.List(ctx, hostpool.Tag("web"))
	var ae *hostpool.APIError
	if !errors.As(err, &ae) || !hostpool.RateLimited(err) || ae.RetryAfter != time.Second || !strings.Contains(err.Error(), "rate limited (429)") {
		t.Fatalf("429: %v (%+v)", err, ae)
	}
	f.Fail(1, http.StatusInternalServerError)
	_, err = do.Create(ctx, hostpool.CreateSpec{Name: "web-1", Region: "nyc1", Size: "s", Image: "x"})
	if !errors.As(err, &ae) || ae.Status != 500 || hostpool.RateLimited(err) || !strings.Contains(err.Error(), "create droplet web-1: 500") {
		t.Fatalf("500: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error shows the token: %v", err)
	}
	if len(f.Droplets()) != 0 {
		t.Errorf("a failed create made %v", f.Droplets())
	}
	// A wrong token is refused with DigitalOcean's 401.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	bad, err := hostpool.NewDigitalOcean(hostpool.DigitalOceanOptions{Token: "wrong", BaseURL: url, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.List(ctx, "x"); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("a wrong token: %v", err)
	}
	if st := f.Stats(); st.Unauthorized != 1 || len(st.Leaks) != 0 || st.Failed != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "do.token")
	if err := os.WriteFile(good, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := hostpool.LoadToken(good, "SHOAL_TEST_NO_SUCH_VAR"); err != nil || tok != secret {
		t.Fatalf("LoadToken = %q, %v", tok, err)
	}
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		loose:                         "has mode 0644: others can read it; chmod 600",
		empty:                         "is empty",
		filepath.Join(dir, "missing"): "does not exist",
		dir:                           "not a regular file",
	} {
		_, err := hostpool.LoadToken(file, "")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), file) {
			t.Errorf("LoadToken(%s) = %v, want %q", file, err, want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the token: %v", err)
		}
	}
	t.Setenv("SHOAL_TEST_DO_TOKEN", " "+secret+" ")
	if tok, err := hostpool.LoadToken("", "SHOAL_TEST_DO_TOKEN"); err != nil || tok != secret {
		t.Errorf("from the environment: %q, %v", tok, err)
	}
	if _, err := hostpool.LoadToken("", "SHOAL_TEST_NO_SUCH_VAR"); err == nil || !strings.Contains(err.Error(), "SHOAL_TEST_NO_SUCH_VAR") {
		t.Errorf("no token: %v", err)
	}
}

func TestUserData(t *testing.T) {
	tok := "shoal-join-v1.aaaaaaaaaaaaaaaa.bbbb.cccc"
	ud, err := hostpool.UserData(hostpool.UserDataSpec{Server: "https://10.0.0.1:7443", Token: tok, Name: "web-3", Region: "nyc1"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ud, "#!/bin/sh\n") || !strings.Contains(ud, "systemctl enable --now shoal-agent") {
		t.Errorf("user-data:\n%s", ud)
	}
	cfg, gotTok, err := dotest.AgentFiles(ud)
	if err != nil {
		t.Fatal(err)
	}
	if gotTok != tok {
		t.Errorf("token %q", gotTok)
	}
	cfg = strings.ReplaceAll(cfg, hostpool.AdvertiseVar, "10.0.0.9")
	a, err := config.ParseAgent("/etc/shoal/agent.yaml", []byte(cfg))
	if err != nil {
		t.Fatalf("agent.yaml of the user-data: %v\n%s", err, cfg)
	}
	if a.Name != "web-3" || a.Region != "nyc1" || a.Zone != "" || a.Advertise != "10.0.0.9" || !slices.Equal(a.Server, []string{"https://10.0.0.1:7443"}) || a.JoinTokenFile != "/etc/shoal/join-token" {
		t.Errorf("agent.yaml %+v", a)
	}
	if _, err := hostpool.UserData(hostpool.UserDataSpec{Server: "https://10.0.0.1:7443", Token: tok, Name: "Bad Name"}); err == nil {
		t.Error("a bad host name was accepted")
	}
	if _, err := hostpool.UserData(hostpool.UserDataSpec{Server: "https://10.0.0.1:7443", Token: "a\nb", Name: "web-1"}); err == nil {
		t.Error("a token of two lines was accepted")
	}
}

// TestDropletID reads the droplet's id from a metadata service, and
// refuses an answer that is not an id.
func TestDropletID(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/droplet/metadata/v1/id":
			w.Write([]byte("4242\n"))
		case "/portal/metadata/v1/id":
			w.Write([]byte("<html>captive portal</html>"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	id, err := hostpool.DropletID(ctx, srv.URL+"/droplet/metadata/v1")
	if err != nil || id != "4242" {
		t.Fatalf("DropletID = %q, %v; want 4242", id, err)
	}
	if id, err := hostpool.DropletID(ctx, srv.URL+"/portal/metadata/v1/"); err == nil || !strings.Contains(err.Error(), "is not a droplet id") {
		t.Fatalf("DropletID of a page = %q, %v; want an error naming it", id, err)
	}
	if _, err := hostpool.DropletID(ctx, srv.URL+"/nothing/"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("DropletID of a 404: %v; want an error with the status", err)
	}
}
