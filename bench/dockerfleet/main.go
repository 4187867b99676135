// Command dockerfleet measures the deploy of a `runtime: docker` app to a
// fleet of 3 hosts: `shoal server` and 3 `shoal agent`s on 127.0.0.1, each
// agent with a Docker engine of its own (-engines own: a dockerd per host,
// started here; -engines shared: the one of DOCKER_HOST, each agent its
// own scope), and examples/docker with a second, larger layer under the
// app's binary (a stand-in for a base image: incompressible bytes, -base
// MiB). It runs `shoal deploy` (v1), then a deploy that changes only the
// app's binary (v2), and reports for each the CLI's wall time (image build
// and rollout included) and the bytes moved: what the CLI uploaded to the
// server and the artifacts the agents fetched (image artifact and layers).
//
//	go build -o /tmp/shoal ./cmd/shoal
//	DOCKER_HOST=unix:///tmp/shoal-dev-docker/docker.sock go run ./bench/dockerfleet -shoal /tmp/shoal
//
// The CLI builds on DOCKER_HOST's engine. With -engines shared every
// agent's engine holds the image the CLI built, so none loads it.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/shoal-dev/shoal/bench/internal/benchkit"
	"github.com/shoal-dev/shoal/internal/dockerrt"
	"github.com/shoal-dev/shoal/internal/release"
	"github.com/shoal-dev/shoal/internal/testenv"
)

func main() {
	shoal := flag.String("shoal", "shoal", "the shoal `binary`")
	app := flag.String("app", "examples/docker", "the docker example's `folder`")
	base := flag.Int("base", 32, "size of the base layer in `MiB`")
	engines := flag.String("engines", "own", "`own` (a dockerd per host) or shared (DOCKER_HOST's)")
	flag.Parse()
	if *engines != "own" && *engines != "shared" {
		fmt.Fprintln(os.Stderr, "dockerfleet: -engines must be own or shared")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *shoal, *app, *base, *engines == "own"); err != nil {
		fmt.Fprintln(os.Stderr, "dockerfleet:", err)
		os.Exit(1)
	}
}

var hosts = []string{"h1", "h2", "h3"}

type bench struct {
	bin    string
	srvDir string
	server *testenv.Server
	agents map[string]*testenv.Process
	data   map[string]string // host -> agent data dir
	engine map[string]string // host -> its engine's DOCKER_HOST ("" for the shared one)
}

func run(ctx context.Context, bin, src string, baseMiB int, own bool) (err error) {
	b := &bench{bin: bin, agents: map[string]*testenv.Process{}, data: map[string]string{}, engine: map[string]string{}}
	if b.srvDir, err = os.MkdirTemp("", "shoal-bench-dockerfleet-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.srvDir)
	yaml := "data_dir: data\nadmin: {listen: \"127.0.0.1:0\"}\nfleet: {listen: \"127.0.0.1:0\", heartbeat: 200ms, lost_after: 3s}\nbalancer: {listen: \"127.0.0.1:0\", drain_timeout: 2s}\n"
	if err := os.WriteFile(filepath.Join(b.srvDir, "server.yaml"), []byte(yaml), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "server", "-c", filepath.Join(b.srvDir, "server.yaml"))
	cmd.Dir = b.srvDir
	if b.server, err = testenv.StartServer(ctx, cmd, filepath.Join(b.srvDir, "data")); err != nil {
		return err
	}
	defer b.server.Close()
	cli, err := dockerrt.Connect(ctx, 10*time.Second)
	if err != nil {
		return err
	}
	defer cli.Close()
	if own {
		for _, h := range hosts {
			host, stop, err := startEngine(ctx, filepath.Join(b.srvDir, h+"-engine"))
			if err != nil {
				return err
			}
			defer stop()
			b.engine[h] = host
		}
	}
	for _, h := range hosts {
		if err := b.startAgent(ctx, h); err != nil {
			return err
		}
	}
	defer func() {
		for h, p := range b.agents {
			p.Close()
			removeScope(cli, b.data[h])
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := testenv.WaitFor(wctx, func() error {
		out, err := b.shoal(ctx, b.srvDir, "hosts")
		if n := strings.Count(string(out), "ready"); err != nil || n != len(hosts) {
			return fmt.Errorf("%d hosts ready: %v %s", n, err, out)
		}
		return nil
	}); err != nil {
		return err
	}

	app, err := benchkit.PrepareApp(src, "shoal-bench-dockerfleet-app-", func(c benchkit.AppConfig) {
		delete(c, "admin")
		delete(c, "balancer")
		g := c.Section("group")
		g["min"], g["desired"], g["max"] = 3, 3, 3
	})
	if err != nil {
		return err
	}
	defer os.RemoveAll(app)
	defer removeImages(cli)
	blob := make([]byte, baseMiB<<20)
	rand.Read(blob)
	if err := os.WriteFile(filepath.Join(app, "base.bin"), blob, 0o644); err != nil {
		return err
	}
	df := "FROM scratch\nCOPY base.bin /base.bin\nCOPY dockerapp /dockerapp\nENTRYPOINT [\"/dockerapp\"]\n"
	if err := os.WriteFile(filepath.Join(app, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}

	engines := "each host its own engine"
	if !own {
		engines = "one shared engine"
	}
	fmt.Printf("deploy of a runtime: docker app to %d hosts (%s; base layer %d MiB)\n", len(hosts), engines, baseMiB)
	fmt.Printf("%-34s %9s %14s %22s\n", "deploy", "wall", "upload bytes", "fetched by agents")
	var digests []string
	for i, v := range []string{"v1", "v2"} {
		if i > 0 {
			if err := setVersion(app, "v1", v); err != nil {
				return err
			}
		}
		marks := b.marks()
		start := time.Now()
		out, err := b.shoal(ctx, app, "deploy")
		wall := time.Since(start)
		if err != nil || !strings.Contains(string(out), "deploy: "+v+" serves") {
			return fmt.Errorf("shoal deploy %s: %v\n%s", v, err, out)
		}
		up, err := uploaded(string(out))
		if err != nil {
			return fmt.Errorf("shoal deploy %s: %w\n%s", v, err, out)
		}
		fetched, agents := b.fetched(marks)
		if agents == 0 {
			return fmt.Errorf("deploy %s: no agent fetched an artifact", v)
		}
		d, err := b.releaseDigest(ctx, app, v)
		if err != nil {
			return err
		}
		digests = append(digests, d)
		what := map[string]string{"v1": "v1 (first: whole image)", "v2": "v2 (only the app layer changed)"}[v]
		fmt.Printf("%-34s %8.1fs %11.1f MB %14s (%d hosts)\n", what, wall.Seconds(), float64(up)/1e6, mib(fetched), agents)
	}

	// The layers of both saved images, from a host's artifact store.
	store, err := release.Open(filepath.Join(b.data["h1"], "release"), nil)
	if err != nil {
		return err
	}
	l1, err := layers(ctx, store, digests[0])
	if err != nil {
		return err
	}
	l2, err := layers(ctx, store, digests[1])
	if err != nil {
		return err
	}
	var all, changed, changedGz int64
	for _, l := range l2 {
		all += l.size
		if !l1.has(l.diffID) {
			changed += l.size
			changedGz += l.gzSize
		}
	}
	art2, err := store.Stat(digests[1])
	if err != nil {
		return err
	}
	fmt.Printf("v2's image: %d layers, %s uncompressed; image artifact (gzip) %s\n", len(l2), mib(all), mib(art2.Size))
	fmt.Printf("v2's layers v1 lacked: %s uncompressed, %s gzipped\n", mib(changed), mib(changedGz))
	return nil
}

// uploaded sums the sizes of the CLI's "uploading ... (N MB)" lines.
func uploaded(out string) (int64, error) {
	var n int64
	for _, m := range regexp.MustCompile(`uploading (?:artifact|layer) \S+ \(([0-9.]+) (B|kB|MB|GB)\)`).FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, err
		}
		n += int64(v * map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m[2]])
	}
	return n, nil
}

// releaseDigest returns the artifact digest of release v ("v2") of the app.
func (b *bench) releaseDigest(ctx context.Context, app, v string) (string, error) {
	out, err := b.shoal(ctx, app, "releases", "-o", "json")
	if err != nil {
		return "", fmt.Errorf("shoal releases: %w\n%s", err, out)
	}
	var rels []struct {
		Version int    `json:"version"`
		Digest  string `json:"digest"`
	}
	if err := json.Unmarshal(out, &rels); err != nil {
		return "", fmt.Errorf("shoal releases -o json: %w\n%s", err, out)
	}
	for _, r := range rels {
		if "v"+strconv.Itoa(r.Version) == v {
			return r.Digest, nil
		}
	}
	return "", fmt.Errorf("shoal releases: no %s:\n%s", v, out)
}

func (b *bench) startAgent(ctx context.Context, host string) error {
	tok, err := b.shoal(ctx, b.srvDir, "join-token")
	if err != nil {
		return fmt.Errorf("join-token: %w\n%s", err, tok)
	}
	dir := filepath.Join(b.srvDir, host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg := fmt.Sprintf("server: %s\njoin_token_file: token\nname: %s\nlisten: 127.0.0.1:0\nadvertise: 127.0.0.1\ndata_dir: data\n", b.server.FleetURL, host)
	if e := b.engine[host]; e != "" {
		cfg += "docker_host: " + e + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), bytes.TrimSpace(tok), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(b.bin, "agent", "-c", filepath.Join(dir, "agent.yaml"))
	cmd.Dir = dir
	p, err := testenv.StartProcess(cmd)
	if err != nil {
		return err
	}
	b.agents[host], b.data[host] = p, filepath.Join(dir, "data")
	return nil
}

// marks returns where each agent's output is now.
func (b *bench) marks() map[string]int {
	m := map[string]int{}
	for h, p := range b.agents {
		m[h] = p.Mark()
	}
	return m
}

var fetchedRe = regexp.MustCompile(`"artifact fetched" digest=(sha256:[0-9a-f]{64}) bytes=(\d+)`)

// fetched sums the artifact bytes (image artifacts and layers) the agents
// fetched since marks, and returns how many agents fetched any (a rollout
// with surge may place two instances on one host).
func (b *bench) fetched(marks map[string]int) (n int64, agents int) {
	for h, p := range b.agents {
		any := false
		for _, l := range p.Lines()[marks[h]:] {
			if m := fetchedRe.FindStringSubmatch(l.Text); m != nil {
				v, _ := strconv.ParseInt(m[2], 10, 64)
				n += v
				any = true
			}
		}
		if any {
			agents++
		}
	}
	return n, agents
}

func (b *bench) shoal(ctx context.Context, dir string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SHOAL_ADMIN_URL="+b.server.AdminURL, "SHOAL_TOKEN="+b.server.Token)
	return cmd.CombinedOutput()
}

type layer struct {
	diffID       string
	size, gzSize int64
}

type layerSet []layer

func (s layerSet) has(id string) bool {
	for _, l := range s {
		if l.diffID == id {
			return true
		}
	}
	return false
}

// layers reads a saved image artifact and returns its layers (each
// layer.tar, or blob of the OCI layout, that is a tar): digest, size, and
// its gzipped size.
func layers(ctx context.Context, store *release.Store, digest string) (layerSet, error) {
	rc, err := store.OpenImage(ctx, digest, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out layerSet
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if filepath.Base(h.Name) != "layer.tar" {
			continue
		}
		sum := sha256.New()
		var gz countWriter
		zw := gzip.NewWriter(&gz)
		n, err := io.Copy(io.MultiWriter(sum, zw), tr)
		if err != nil {
			return nil, err
		}
		zw.Close()
		out = append(out, layer{diffID: "sha256:" + hex.EncodeToString(sum.Sum(nil)), size: n, gzSize: gz.n})
	}
}

func imageID(ctx context.Context, store *release.Store, digest string) (string, error) {
	rc, err := store.OpenTar(ctx, digest)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return dockerrt.ImageID(rc)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func setVersion(dir, from, to string) error {
	p := filepath.Join(dir, "main.go")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	s := strings.Replace(string(b), `const version = "`+from+`"`, `const version = "`+to+`"`, 1)
	if s == string(b) {
		return fmt.Errorf("%s has no version %s", p, from)
	}
	return os.WriteFile(p, []byte(s), 0o644)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// removeScope removes the containers an agent of data dir leaves running
// (they outlive agents by design).
func removeScope(cli *client.Client, data string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, _ := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", dockerrt.LabelScope+"="+data))})
	for _, c := range list {
		cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

// removeImages removes the images built for the example.
func removeImages(cli *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	imgs, _ := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", dockerrt.LabelApp+"=dockerapp"))})
	for _, im := range imgs {
		cli.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true})
	}
}

// startEngine starts a dockerd with its state under dir
// (testenv.StartDockerd) and returns its DOCKER_HOST and a function that
// removes its containers, stops it and removes dir.
func startEngine(ctx context.Context, dir string) (string, func(), error) {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	host, stop, err := testenv.StartDockerd(wctx, dir, func(ctx context.Context, host string) error {
		cli, err := dockerrt.ConnectTo(ctx, host, 5*time.Second)
		if err == nil {
			cli.Close()
		}
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return host, func() {
		if cli, err := dockerrt.ConnectTo(context.Background(), host, 10*time.Second); err == nil {
			removeAll(cli)
			cli.Close()
		}
		stop()
	}, nil
}

// removeAll removes every container of an engine the bench started.
func removeAll(cli *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, _ := cli.ContainerList(ctx, container.ListOptions{All: true})
	for _, c := range list {
		cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}
