package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/testenv"
)

// pageLoad is one line of e2e/browser/pageload.mjs: one load of the page
// in a fresh browser context.
type pageLoad struct {
	Target         string  `json:"target"`
	Visit          int     `json:"visit"`
	Status         int     `json:"status"`
	Modules        int     `json:"modules"`
	BundleBytes    int     `json:"bundle_bytes"`
	SHA1OK         bool    `json:"sha1_ok"`
	Cache          string  `json:"cache"`
	Encoding       string  `json:"encoding"`
	LoadMS         float64 `json:"load_ms"`
	BundleMS       float64 `json:"bundle_ms"`
	BundleTransfer int     `json:"bundle_transfer"`
	BundleDecoded  int     `json:"bundle_decoded"`
}

// Page-load lab: the server host's addresses.
const (
	pageAppPort    = 8000
	pageShoalPort  = 8080 // compression and the asset cache (defaults)
	pageOffPort    = 8081 // both off
	pageNginxPort  = 8082 // nginx, gzip on at level 1
	pageBundleSize = 2048 // KiB
)

// TestPageLoadInBrowser loads the meteor-like example's page, whose 2 MiB
// JavaScript bundle is served under its content hash with
// "Cache-Control: public, max-age=31536000, immutable", in chromium on a
// client host whose link from the server host is limited to 4 Mbit/s (a
// tbf qdisc on the server's side of the lab), through three front ends on
// the server host in the same run: `shoal lb` with its defaults
// (compression and the asset cache), `shoal lb` with both off, and nginx
// with `gzip on`. It checks correctness, not timings: every page loads,
// the bundle runs and its bytes are the ones its name hashes; Shoal
// compresses it and serves the second visitor (a fresh browser context)
// from its cache; with both off the bundle passes as the app sent it.
// The timings are logged; bench/pageload.sh runs this test in rounds
// (SHOAL_PAGELOAD_ROUNDS) and collects them (SHOAL_PAGELOAD_OUT).
func TestPageLoadInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no %s (apt-get install -y chromium): %v", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH (apt-get install -y nodejs npm)")
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("no nginx on PATH (apt-get install -y nginx-light)")
	}
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skip("no tc on PATH (apt-get install -y iproute2)")
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	browserDir := filepath.Join(root, "e2e", "browser")
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Skip("playwright-core is not installed: run `npm ci --no-audit --no-fund` in e2e/browser")
	}
	rounds := 1
	if s := os.Getenv("SHOAL_PAGELOAD_ROUNDS"); s != "" {
		if rounds, err = strconv.Atoi(s); err != nil || rounds < 1 || rounds > 20 {
			t.Fatalf("SHOAL_PAGELOAD_ROUNDS=%q: want 1 to 20", s)
		}
	}
	bin := testenv.BuildShoal(t)
	lab := testenv.NewLab(t, "srv", "cli")
	srv := lab.Host("srv")
	ctx := testenv.Context(t, time.Duration(rounds)*3*time.Minute+2*time.Minute)

	// The app, on the server host's loopback.
	app := lab.Command("srv", node, "main.js")
	app.Dir = filepath.Join(root, "examples", "meteor-like")
	app.Env = append(os.Environ(), "PORT="+strconv.Itoa(pageAppPort), "HOST=127.0.0.1", "BOOT_DELAY_MS=0",
		"BUNDLE_KB="+strconv.Itoa(pageBundleSize))
	ap := testenv.StartCmd(t, app)
	if _, err := ap.WaitForLine(ctx, regexp.MustCompile(`listening on`)); err != nil {
		t.Fatalf("the app did not start: %v\n%s", err, ap.Output())
	}

	// Two shoal lb, each from its own folder.
	for _, fe := range []struct {
		port  int
		route string
	}{
		{pageShoalPort, "{name: app, pool: app}"},
		{pageOffPort, "{name: app, pool: app, compression: {enabled: false}, cache: {enabled: false}}"},
	} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "lb.yaml")
		src := fmt.Sprintf("listeners: [{name: web, listen: '%s:%d'}]\nroutes: [%s]\npools: [{name: app, targets: [{addr: '127.0.0.1:%d'}]}]\nadmin: {listen: '127.0.0.1:0'}\n",
			srv.IP, fe.port, fe.route, pageAppPort)
		if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		p := lab.Start(t, "srv", bin, "lb", "-c", cfg)
		if _, err := p.WaitForLine(ctx, regexp.MustCompile(`msg=listening listener=web`)); err != nil {
			t.Fatalf("shoal lb on %d did not start: %v\n%s", fe.port, err, p.Output())
		}
	}

	// nginx with gzip at level 1, Shoal's default level.
	ndir := t.TempDir()
	conf := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(pageNginxConf(ndir, srv.IP)), 0o600); err != nil {
		t.Fatal(err)
	}
	np := lab.Start(t, "srv", nginx, "-p", ndir, "-c", conf)
	if err := testenv.WaitFor(ctx, func() error {
		c, err := lab.Dialer("srv")(ctx, "tcp", fmt.Sprintf("%s:%d", srv.IP, pageNginxPort))
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatalf("nginx did not start: %v\n%s", err, np.Output())
	}

	// 4 Mbit/s from the server host to the client.
	if out, err := lab.CommandContext(ctx, "srv", "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
		"rate", "4mbit", "burst", "32kbit", "latency", "400ms").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v\n%s", err, out)
	}

	var all []pageLoad
	for r := range rounds {
		cmd := lab.CommandContext(ctx, "cli", node, "pageload.mjs",
			fmt.Sprintf("shoal=http://%s:%d", srv.IP, pageShoalPort),
			fmt.Sprintf("shoal-off=http://%s:%d", srv.IP, pageOffPort),
			fmt.Sprintf("nginx=http://%s:%d", srv.IP, pageNginxPort))
		cmd.Dir = browserDir
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		t.Logf("round %d, pageload.mjs:\n%s", r+1, out)
		if err != nil {
			t.Fatalf("pageload.mjs: %v", err)
		}
		loads := parsePageLoads(t, string(out))
		checkPageLoads(t, loads, r == 0)
		all = append(all, loads...)
	}
	if path := os.Getenv("SHOAL_PAGELOAD_OUT"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		enc := json.NewEncoder(f)
		for _, l := range all {
			enc.Encode(l)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// pageNginxConf is nginx's configuration: gzip on at level 1 for
// JavaScript, in front of the app, writing only under dir.
func pageNginxConf(dir, ip string) string {
	return fmt.Sprintf(`worker_processes 1;
daemon off;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    gzip on;
    gzip_comp_level 1;
    gzip_min_length 1024;
    gzip_proxied any;
    gzip_vary on;
    gzip_types application/javascript;
    server {
        listen %[2]s:%[3]d;
        location / {
            proxy_pass http://127.0.0.1:%[4]d;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
        }
    }
}
`, dir, ip, pageNginxPort, pageAppPort)
}

// parsePageLoads reads pageload.mjs's JSON lines.
func parsePageLoads(t *testing.T, out string) []pageLoad {
	t.Helper()
	var loads []pageLoad
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var l pageLoad
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("pageload.mjs line %q: %v", line, err)
		}
		loads = append(loads, l)
	}
	return loads
}

// checkPageLoads checks one round: two visits per front end, every page
// loaded with its bundle intact; what each front end did to the bundle.
// In the first round Shoal's first visit fetches the bundle (MISS); in
// later ones its cache is warm from the rounds before.
func checkPageLoads(t *testing.T, loads []pageLoad, first bool) {
	t.Helper()
	if len(loads) != 6 {
		t.Fatalf("%d loads, want 2 visits x 3 front ends", len(loads))
	}
	for _, l := range loads {
		if !l.SHA1OK || l.Status != 200 || l.Modules == 0 || l.BundleBytes < pageBundleSize<<10-1024 || l.BundleDecoded != l.BundleBytes {
			t.Errorf("%s visit %d: bundle status %d, %d bytes (decoded %d), sha1 ok %v, %d modules ran",
				l.Target, l.Visit, l.Status, l.BundleBytes, l.BundleDecoded, l.SHA1OK, l.Modules)
		}
		switch l.Target {
		case "shoal":
			if l.Encoding != "gzip" {
				t.Errorf("shoal visit %d: Content-Encoding %q, want gzip", l.Visit, l.Encoding)
			}
			want := "HIT"
			if first && l.Visit == 1 {
				want = "MISS"
			}
			if l.Cache != want {
				t.Errorf("shoal visit %d: X-Cache-Status %q, want %s", l.Visit, l.Cache, want)
			}
		case "shoal-off":
			if l.Encoding != "" || l.Cache != "" {
				t.Errorf("shoal-off visit %d: Content-Encoding %q, X-Cache-Status %q; want neither", l.Visit, l.Encoding, l.Cache)
			}
		case "nginx":
			if l.Encoding != "gzip" {
				t.Errorf("nginx visit %d: Content-Encoding %q, want gzip", l.Visit, l.Encoding)
			}
		}
	}
}
