package cli

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/adminapi"
)

// appFolder writes a shoal.yaml of app "mine" whose admin API is at addr,
// and an admin token, as a `shoal up` that ran there would have.
func appFolder(t *testing.T, addr string) string {
	t.Helper()
	dir := initFolder(t, "mine", map[string]string{
		"shoal.yaml": fmt.Sprintf("app: mine\nrun:\n  command: node main.js\nadmin:\n  listen: %s\n", addr),
	})
	if err := os.MkdirAll(filepath.Join(dir, ".shoal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".shoal", adminapi.TokenFile), []byte("my-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStatusNamesTheAppThatAnswered(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	srv := httptest.NewServer(adminapi.WithApp("other", adminapi.RequireToken("their-token", mux)))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	dir := appFolder(t, addr)

	code, _, stderr := runCLI(t, "status", "-c", filepath.Join(dir, "shoal.yaml"))
	want := fmt.Sprintf("the admin API at %s belongs to app other, not mine (is another shoal up running there?)", addr)
	if code != ExitFailure || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant %q", code, stderr, want)
	}
	if strings.Contains(stderr, "token") {
		t.Errorf("blames the token:\n%s", stderr)
	}
}

func TestStatusWhenNothingAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := appFolder(t, addr)

	code, _, stderr := runCLI(t, "status", "-c", filepath.Join(dir, "shoal.yaml"))
	want := fmt.Sprintf("nothing answers at http://%s (connection refused): is `shoal up` running in %s?", addr, dir)
	if code != ExitFailure || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant %q", code, stderr, want)
	}
}
