package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.yaml.in/yaml/v3"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// editYAML rewrites dir/shoal.yaml through fn.
func editYAML(t *testing.T, dir string, fn func(doc map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "shoal.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	fn(doc)
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// deployLoad is the constant load of a deploy test: GETs, POSTs with
// unique ids, WebSocket clients that reconnect, and a long-poll client.
type deployLoad struct {
	failed     atomic.Int64
	lastErr    atomic.Value
	okGets     atomic.Int64
	postsOK    sync.Map // id -> true, answered 200
	posts      atomic.Int64
	wsClean    atomic.Int64 // closes with 1001 going away
	wsAbrupt   atomic.Int64
	wsConnects atomic.Int64
	polls      atomic.Int64
	repins     atomic.Int64
	wg         sync.WaitGroup
}

func (l *deployLoad) fail(what string, err error) {
	l.failed.Add(1)
	l.lastErr.Store(fmt.Sprintf("%s: %v", what, err))
}

func startDeployLoad(ctx context.Context, base string) *deployLoad {
	l := &deployLoad{}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for range 2 { // GETs
		l.wg.Go(func() {
			for i := 0; i < 200000 && ctx.Err() == nil; i++ {
				resp, err := hc.Get(base + "/")
				if err != nil {
					if ctx.Err() == nil {
						l.fail("GET", err)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.fail("GET", errors.New(resp.Status))
					continue
				}
				l.okGets.Add(1)
			}
		})
	}
	for w := range 2 { // POSTs, each with a unique id
		l.wg.Go(func() {
			for i := 0; i < 100000 && ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				l.posts.Add(1)
				resp, err := hc.Post(base+"/api/once", "text/plain", strings.NewReader(id))
				if err != nil {
					if ctx.Err() == nil {
						l.fail("POST "+id, err)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.fail("POST "+id, errors.New(resp.Status))
					continue
				}
				l.postsOK.Store(id, true)
			}
		})
	}
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	for range 3 { // WebSocket clients: echo, reconnect on close
		l.wg.Go(func() {
			for i := 0; i < 1000 && ctx.Err() == nil; i++ {
				c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: hc})
				if err != nil {
					if ctx.Err() == nil {
						l.fail("WebSocket dial", err)
					}
					continue
				}
				l.wsConnects.Add(1)
				for j := 0; ctx.Err() == nil; j++ {
					msg := fmt.Sprintf("m%d", j)
					if err = c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
						break
					}
					var got []byte
					if _, got, err = c.Read(ctx); err != nil {
						break
					}
					if string(got) != msg {
						l.fail("WebSocket echo", fmt.Errorf("got %q, want %q", got, msg))
					}
				}
				switch {
				case ctx.Err() != nil:
				case websocket.CloseStatus(err) == websocket.StatusGoingAway:
					l.wsClean.Add(1)
				default:
					l.wsAbrupt.Add(1)
					l.fail("WebSocket closed abruptly", err)
				}
				c.CloseNow()
			}
		})
	}
	l.wg.Go(func() { // long-poll client with a cookie jar (sticky)
		jar, _ := cookiejar.New(nil)
		pc := &http.Client{Timeout: 30 * time.Second, Jar: jar, Transport: &http.Transport{Proxy: nil}}
		session := ""
		for i := 0; i < 100000 && ctx.Err() == nil; i++ {
			if session == "" {
				resp, err := pc.Post(base+"/poll/session", "text/plain", nil)
				if err != nil {
					if ctx.Err() == nil {
						l.fail("poll session", err)
					}
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					l.fail("poll session", errors.New(resp.Status))
					continue
				}
				_, rest, _ := strings.Cut(string(b), `"id":"`)
				session, _, _ = strings.Cut(rest, `"`)
				continue
			}
			// Post a message, then poll for it.
			resp, err := pc.Post(base+"/poll/"+session, "text/plain", strings.NewReader("hi"))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusNotFound { // instance drained: re-pinned
					l.repins.Add(1)
					session = ""
					continue
				}
				if resp.StatusCode != http.StatusAccepted {
					err = errors.New(resp.Status)
				}
			}
			if err == nil {
				if resp, err = pc.Get(base + "/poll/" + session); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusOK, http.StatusNoContent:
						l.polls.Add(1)
					case http.StatusNotFound:
						l.repins.Add(1)
						session = ""
					default:
						err = errors.New(resp.Status)
					}
				}
			}
			if err != nil && ctx.Err() == nil {
				l.fail("long poll", err)
			}
		}
	})
	return l
}

// requireFlowing waits until every kind of client has made progress
// since the given counts.
func (l *deployLoad) requireFlowing(t *testing.T, what string) {
	t.Helper()
	g, p, w := l.okGets.Load(), l.posts.Load(), l.polls.Load()
	err := testenv.WaitFor(testenv.Context(t, 30*time.Second), func() error {
		if l.okGets.Load() < g+20 || l.posts.Load() < p+20 || l.polls.Load() < w+3 {
			return fmt.Errorf("load not flowing: gets %d posts %d polls %d", l.okGets.Load(), l.posts.Load(), l.polls.Load())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (l *deployLoad) requireNoFailure(t *testing.T, what string) {
	t.Helper()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%s: %d failed requests (last: %v)", what, n, l.lastErr.Load())
	}
}

func TestDeployUnderLoad(t *testing.T) {
	bin := testenv.BuildShoal(t)
	dir := exampleApp(t, "meteor-like", 2, 4)
	onceLog := filepath.Join(t.TempDir(), "once.log")
	editYAML(t, dir, func(doc map[string]any) {
		run := doc["run"].(map[string]any)
		run["env"].(map[string]any)["ONCE_LOG"] = onceLog
		doc["health"].(map[string]any)["grace"] = "4s"
		doc["deploy"] = map[string]any{"batch_timeout": "8s", "max_surge": "1",
			"hooks": map[string]any{"pre_deploy": []any{"echo migrating"}, "post_deploy": []any{"echo deployed"}}}
	})
	up := startUp(t, bin, dir)
	waitStatus(t, up.client, "2 in service", inService(2))

	ctx, cancel := context.WithCancel(context.Background())
	l := startDeployLoad(ctx, up.lbURL)
	t.Cleanup(func() { cancel(); l.wg.Wait() })
	l.requireFlowing(t, "before deploys")

	// v2: a code change, under load.
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clean := l.wsClean.Load()
	code, out := runShoal(t, bin, dir, "deploy")
	if code != 0 || !strings.Contains(out, "deploy: v2 serves") || !strings.Contains(out, "[pre_deploy] migrating") ||
		!strings.Contains(out, "[post_deploy] deployed") || !strings.Contains(out, "built artifact") {
		t.Fatalf("shoal deploy v2: exit %d\n%s", code, out)
	}
	st := waitStatus(t, up.client, "v2 serving", inService(2))
	if st.Release != 2 {
		t.Fatalf("release %d after deploy, want 2", st.Release)
	}
	l.requireFlowing(t, "after v2")
	l.requireNoFailure(t, "deploy v2")
	if l.wsClean.Load() < clean+3 {
		t.Errorf("WebSocket clean closes %d -> %d, want every client closed with 1001 and reconnected", clean, l.wsClean.Load())
	}

	// v3: never healthy (it never finishes booting); config-only change
	// detected on its own; rolled back automatically.
	editYAML(t, dir, func(doc map[string]any) {
		doc["run"].(map[string]any)["env"].(map[string]any)["BOOT_DELAY_MS"] = "600000"
	})
	code, out = runShoal(t, bin, dir, "deploy")
	if code == 0 || !strings.Contains(out, "source unchanged") || !strings.Contains(out, "rolled_back") ||
		!strings.Contains(out, "health/exit reason") || !strings.Contains(out, "booting (delay 600000 ms)") {
		t.Fatalf("shoal deploy of a broken v3: exit %d, want non-zero with the reason and logs\n%s", code, out)
	}
	st = waitStatus(t, up.client, "back on v2", inService(2))
	if st.Release != 2 {
		t.Fatalf("release %d after failed deploy, want 2", st.Release)
	}
	l.requireFlowing(t, "after v3")
	l.requireNoFailure(t, "failed deploy of v3")

	// Rollback to v1 from its kept artifact.
	editYAML(t, dir, func(doc map[string]any) {
		doc["run"].(map[string]any)["env"].(map[string]any)["BOOT_DELAY_MS"] = "300"
	})
	code, out = runShoal(t, bin, dir, "rollback", "v1")
	if code != 0 || !strings.Contains(out, "rollback: v1 serves") || strings.Contains(out, "built artifact") {
		t.Fatalf("shoal rollback v1: exit %d\n%s", code, out)
	}
	waitStatus(t, up.client, "v1 serving", inService(2))

	// A config-only release: no build.
	code, out = runShoal(t, bin, dir, "env", "set", "FEATURE=on")
	if code != 0 || !strings.Contains(out, "config-only: reusing artifact") || strings.Contains(out, "built artifact") ||
		!strings.Contains(out, "v4 serves") {
		t.Fatalf("shoal env set: exit %d\n%s", code, out)
	}
	l.requireFlowing(t, "after env set")
	l.requireNoFailure(t, "rollback and env set")
	code, out = runShoal(t, bin, dir, "releases")
	for _, want := range []string{"v4 *", "active", "failed", "rolled_back", "config", "code"} {
		if !strings.Contains(out, want) {
			t.Errorf("shoal releases lacks %q:\n%s", want, out)
		}
	}

	cancel()
	l.wg.Wait()
	l.requireNoFailure(t, "whole test")
	if l.repins.Load() == 0 || l.wsConnects.Load() < 6 {
		t.Errorf("long-poll re-pins %d, WebSocket connects %d: clients did not move to new instances", l.repins.Load(), l.wsConnects.Load())
	}
	// Every POST answered 200 was processed exactly once, and none twice.
	b, err := os.ReadFile(onceLog)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		id, _, _ := strings.Cut(line, " ")
		seen[id]++
	}
	okN := 0
	l.postsOK.Range(func(k, _ any) bool {
		okN++
		if seen[k.(string)] != 1 {
			t.Errorf("POST %s processed %d times", k, seen[k.(string)])
		}
		return true
	})
	for id, n := range seen {
		if _, ok := l.postsOK.Load(id); !ok || n != 1 {
			t.Errorf("POST %s processed %d times, answered ok=%v", id, n, ok)
		}
	}
	t.Logf("gets %d, posts %d (each once), ws connects %d (clean closes %d), polls %d (re-pins %d)",
		l.okGets.Load(), okN, l.wsConnects.Load(), l.wsClean.Load(), l.polls.Load(), l.repins.Load())

	// Maintenance: 503 with Retry-After, then back.
	if code, out := runShoal(t, bin, dir, "maintenance", "on", "--retry-after", "20s"); code != 0 {
		t.Fatalf("maintenance on: %d %s", code, out)
	}
	resp, err := http.Get(up.lbURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "20" {
		t.Errorf("in maintenance: %s, Retry-After %q; want 503 and 20", resp.Status, resp.Header.Get("Retry-After"))
	}
	if code, out := runShoal(t, bin, dir, "maintenance", "off"); code != 0 {
		t.Fatalf("maintenance off: %d %s", code, out)
	}
}
