package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The test binary doubles as the programs the tests run, chosen by RUNTIME_TEST_HELPER:
//
//	serve  an HTTP server on 127.0.0.1:$PORT that reports its environment, prints $ECHO,
//	       and exits 0 on SIGTERM
//	host   a Shoal stand-in: starts instances with a Local, prints their pids, blocks
//	       until it is killed
//	dhost  the same with a detached Local: starts one "serve" instance, prints
//	       "ready <pid> <addr>", blocks until it is killed
func TestMain(m *testing.M) {
	if code, ok := ShimMain(); ok {
		os.Exit(code)
	}
	if os.Getenv("GORACE") == "" {
		// The race runtime sleeps 1 s before exit by default; shims and the
		// helper supervisor inherit this and end at once.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	switch os.Getenv("RUNTIME_TEST_HELPER") {
	case "serve":
		os.Exit(helperServe())
	case "host":
		os.Exit(helperHost())
	case "dhost":
		os.Exit(helperDetachedHost())
	}
	goleak.VerifyTestMain(m)
}

func helperServe() int {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	wd, _ := os.Getwd()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"port": os.Getenv("PORT"), "id": os.Getenv("SHOAL_INSTANCE_ID"),
			"dir": os.Getenv("SHOAL_INSTANCE_DIR"), "tmp": os.Getenv("TMPDIR"),
			"cwd": wd, "extra": os.Getenv("EXTRA"), "pid": strconv.Itoa(os.Getpid()),
		})
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go srv.Serve(ln)
	if v := os.Getenv("ECHO"); v != "" {
		fmt.Println("echo", v)
	}
	fmt.Println("serving")
	<-ctx.Done()
	srv.Shutdown(context.Background())
	fmt.Println("bye")
	return 0
}

func helperHost() int {
	l, err := NewLocal(Options{DataDir: os.Getenv("RUNTIME_TEST_DATA")})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	dir := os.Getenv("RUNTIME_TEST_DATA")
	simple, err := l.Start(context.Background(), Spec{ID: "simple", Dir: dir, Command: "sleep 1000"})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	tree, err := l.Start(context.Background(), Spec{ID: "tree", Dir: dir,
		Command: `sleep 1000 & echo $! > "$SHOAL_INSTANCE_DIR/child.pid"; wait`})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready", simple.PID, tree.PID)
	select {} // until SIGKILL
}

func helperDetachedHost() int {
	dir := os.Getenv("RUNTIME_TEST_DATA")
	l, err := NewLocal(Options{DataDir: dir, Detached: true})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	info, err := l.Start(context.Background(), Spec{ID: "web", Dir: dir, Command: exe,
		Env: []string{"RUNTIME_TEST_HELPER=serve", "ECHO=hunter2-secret"}, Secrets: []string{"hunter2-secret"}})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready", info.PID, info.Addr)
	select {} // until SIGKILL
}

// processGone reports whether pid no longer runs (absent, or a zombie nobody reaped).
func processGone(pid int) error {
	st, err := readStat(pid)
	if err != nil || !st.alive() {
		return nil
	}
	return fmt.Errorf("pid %d still alive (state %c)", pid, st.State)
}

func newLocal(t *testing.T, opts Options) *Local {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	l, err := NewLocal(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		go func() {
			for range l.Exits() {
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		if n := len(l.List()); n != 0 {
			t.Errorf("%d instances left after Close", n)
		}
	})
	return l
}

func nextExit(t *testing.T, l *Local) Exit {
	t.Helper()
	select {
	case x := <-l.Exits():
		return x
	case <-time.After(30 * time.Second):
		t.Fatal("no exit reported")
		return Exit{}
	}
}

func fileContains(path, s string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), s) {
		return fmt.Errorf("%s does not contain %q yet", filepath.Base(path), s)
	}
	return nil
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
