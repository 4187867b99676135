package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestUnixSocket: a "unix:" base URL reaches an admin API served on a
// Unix socket, with the token.
func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "sock") // t.TempDir paths can be too long for a socket
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/v1/lb/reload" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		w.Write([]byte(`{"reloaded":true}`))
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	for _, base := range []string{"unix:" + sock, "unix://" + sock} {
		if err := New(base, "tok").Reload(context.Background()); err != nil {
			t.Errorf("%s: %v", base, err)
		}
	}
	if err := New("unix:"+filepath.Join(dir, "none.sock"), "tok").Reload(context.Background()); err == nil {
		t.Error("a missing socket answered")
	}
}
