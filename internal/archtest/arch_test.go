package archtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const module = "github.com/shoal-dev/shoal"

// pkg is the part of `go list -json` output the rules need.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// ours lists every package of the module with its imports of other packages of the
// module, paths shortened to "internal/lb" and so on.
func ours(t *testing.T) map[string]pkg {
	t.Helper()
	pkgs := make(map[string]pkg)
	goList(t, "ImportPath,Imports,TestImports,XTestImports", func(p pkg) {
		p.ImportPath = short(p.ImportPath)
		p.Imports = onlyOurs(p.Imports)
		p.TestImports = onlyOurs(p.TestImports)
		p.XTestImports = onlyOurs(p.XTestImports)
		pkgs[p.ImportPath] = p
	})
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of %s; expected the whole module", len(pkgs), module)
	}
	return pkgs
}

// goList runs `go list -e -json=fields` over the whole module and calls each
// with every package, decoded into a T. The go command reads import clauses
// and file lists only: nothing is compiled. -e: a package that does not
// compile is still listed.
func goList[T any](t *testing.T, fields string, each func(T)) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "list", "-e", "-json="+fields, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p T
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		each(p)
	}
}

func short(path string) string {
	return strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
}

func onlyOurs(imports []string) []string {
	var out []string
	for _, imp := range imports {
		if imp == module || strings.HasPrefix(imp, module+"/") {
			out = append(out, short(imp))
		}
	}
	sort.Strings(out)
	return out
}

// allowed bounds the non-test imports (of ours) of each package named here: the
// "imports (ours)" column of the package table in docs/ARCHITECTURE.md. An empty set
// is a leaf. internal/atomicfile and internal/api (the one vocabulary of domain and
// wire types), themselves leaves, may be imported by anyone.
var allowed = map[string][]string{
	"internal/api":     {},
	"internal/pool":    {},
	"internal/health":  {},
	"internal/runtime": {},
	"internal/release": {},
	// Containers and images of a Docker engine (runtime: docker), through the
	// Engine API's client only: no Shoal package below it.
	"internal/dockerrt":   {},
	"internal/store":      {},
	"internal/autoscale":  {},
	"internal/rollout":    {},
	"internal/hooks":      {},
	"internal/timeseries": {},
	"internal/atomicfile": {},
	// HTTP/1.1 head parsing from bytes: pure, imported by the balancer.
	"internal/h1": {},
	// The event loops' system calls (epoll, eventfd, non-blocking sockets):
	// the balancer's alone, below it.
	"internal/netpoll": {},
	// Extended CONNECT on in x/net/http2's server before it initializes.
	"internal/xconnect":  {},
	"internal/buildinfo": {},
	// Where a fleet's next instance runs: pure, imported by the coming scheduler.
	"internal/placement": {},
	"internal/pki":       {},
	// ACME certificates for shoal server (x/crypto/acme): a leaf.
	"internal/acme":     {},
	"internal/testenv":  {},
	"internal/archtest": {},
	// Installs the agent over SSH; agent.yaml's schema is config's.
	"internal/setup": {"internal/config"},
	// The client speaks the wire format with the types of internal/api (a leaf): it
	// must not pull a daemon into the CLI's or a test's view of the API.
	// pki (a leaf of standard-library crypto) checks an https admin API
	// against the fleet CA's pin, with the join's own check.
	"internal/client": {"internal/pki"},
	// The agent's client, like the admin API's: the wire types of internal/api
	// only, so the server that drives agents links no agent.
	"internal/agentclient": {},
	// The host agent's API: instances through the runtime (containers through
	// dockerrt), artifacts through the release store.
	"internal/agent": {"internal/runtime", "internal/release", "internal/dockerrt"},
	// Test support of the agent and its client (a real agent over HTTPS).
	"internal/agent/agenttest": {"internal/agent", "internal/agentclient", "internal/runtime", "internal/release"},
	"internal/reconcile":       {"internal/autoscale"},
	"internal/lb":              {"internal/pool", "internal/health", "internal/h1", "internal/netpoll", "internal/xconnect"},
	"internal/dashboard":       {"internal/timeseries"},
	// config builds the configs of the parts, and the build spec of an app
	// (release.BuildSpec) that `shoal up` and `shoal deploy` share.
	// dockerrt: a runtime: docker app's build spec builds its image through the
	// engine (release.BuildSpec.Image).
	"internal/config": {"internal/lb", "internal/pool", "internal/health",
		"internal/autoscale", "internal/rollout", "internal/release", "internal/dockerrt"},
	"internal/controller": {"internal/config", "internal/release", "internal/runtime",
		"internal/store", "internal/reconcile", "internal/autoscale", "internal/rollout",
		"internal/hooks", "internal/pool", "internal/health",
		// DockerHost: instances of docker releases as containers.
		"internal/dockerrt"},
	// release (a leaf): the artifact routes' interface names release.Artifact.
	"internal/adminapi": {"internal/lb", "internal/controller", "internal/pool",
		"internal/store", "internal/rollout", "internal/buildinfo", "internal/release"},
	"internal/uisource": {"internal/controller", "internal/lb", "internal/pool",
		"internal/store", "internal/dashboard", "internal/timeseries", "internal/rollout"},
	// main dispatches the detached runtime's shim before the CLI (runtime.ShimMain).
	"cmd/shoal": {"internal/cli", "internal/runtime"},
	// The fleet's registry of hosts and the scheduler behind controller.Host:
	// agents through their client, placement for the choice, pki for the
	// guard and the agents' identities.
	"internal/fleet": {"internal/controller", "internal/agentclient", "internal/placement", "internal/pki"},
	// Elastic hosts (issue 17): the fleet's registry to grow and shrink, the
	// agent's config schema and setup's installed layout for the user-data.
	"internal/hostpool": {"internal/fleet", "internal/config", "internal/setup"},
	// Test support: a fake DigitalOcean API (godo's types), no Shoal part.
	"internal/hostpool/dotest": {"internal/hostpool"},
	// The store replicated over Raft (issue 14): commands are the store's,
	// the transport's peers are checked by the fleet CA's role (pki).
	"internal/cluster": {"internal/store", "internal/pki"},
	"internal/daemon": {"internal/config", "internal/controller", "internal/adminapi",
		"internal/uisource", "internal/dashboard", "internal/lb", "internal/pool",
		"internal/release", "internal/runtime", "internal/store", "internal/timeseries",
		// `shoal agent`: the agent API over a detached runtime, with the node's
		// identity (join, renewal, mutual TLS).
		"internal/agent", "internal/pki", "internal/buildinfo",
		// `shoal server`: the fleet's registry and scheduler under each app's
		// controller.
		"internal/fleet",
		// `shoal lb` following a server: each app's health check, sent to
		// the balancer nodes and run by them (lbconfig.go).
		"internal/health",
		// `shoal up` of a runtime: docker app connects to the engine.
		"internal/dockerrt",
		// `shoal server`'s host_pools: elastic hosts.
		"internal/hostpool",
		// `shoal server`'s certificates from ACME, shared by every node.
		"internal/acme",
		// `shoal server` as one server of a Raft cluster.
		"internal/cluster",
		// --join calls the cluster's admin API with its client; the
		// keepalived guard of `shoal lb`'s vip runs the balancer check of
		// `shoal lb check` (client.CheckBalancer) in its own process.
		"internal/client"},
}

// importers bounds who may import a package outside tests: the daemons are composed in
// one place, package daemon, which only the CLI calls. The CLI imports adminapi only for
// the name of the token file.
var importers = map[string][]string{
	"internal/cli":      {"cmd/shoal"},
	"internal/daemon":   {"internal/cli"},
	"internal/adminapi": {"internal/daemon", "internal/cli"},
	"internal/uisource": {"internal/daemon"},
	// bench/scale composes the server side (fleet and controllers) and
	// simulated agents in process to measure them at 1,000 hosts.
	"internal/controller": {"internal/daemon", "internal/adminapi", "internal/uisource", "internal/fleet", "bench/scale"},
	// The server is composed in package daemon, like the other processes.
	"internal/fleet": {"internal/daemon", "internal/hostpool", "bench/scale"},
	// Elastic hosts are composed into `shoal server` (daemon).
	"internal/hostpool": {"internal/daemon", "internal/hostpool/dotest"},
	// Only tests use the fake DigitalOcean API.
	"internal/hostpool/dotest": {},
	// `shoal agent` is composed in package daemon, like the other processes.
	"internal/agent": {"internal/daemon", "internal/agent/agenttest", "bench/scale"},
	// Only tests use the agent's test support.
	"internal/agent/agenttest": {},
	// Test-only helpers never reach the binary; the whole-system benchmarks start
	// `shoal up` with the same helper as the end-to-end tests, and the fleet
	// benchmark runs its fleet in the same lab (testenv.Lab) as the fleet test;
	// the docker fleet benchmark starts `shoal server` and agents with its
	// process helpers, as the docker fleet test does.
	"internal/testenv":  {"bench/internal/benchkit", "bench/fleet", "bench/dockerfleet"},
	"internal/archtest": {},
	// The OS plumbing of the fast path serves the balancer's event loops only.
	"internal/netpoll": {"internal/lb"},
	// Its init must run in the balancer's process before x/net/http2's.
	"internal/xconnect": {"internal/lb"},
	"internal/setup":    {"internal/cli", "internal/hostpool"},
	// The ACME client runs in shoal server only.
	"internal/acme": {"internal/daemon"},
	// A replica is composed into `shoal server` by package daemon
	// (server_cluster.go); bench/scale composes three in process to
	// measure the controllers at scale through the cluster.
	"internal/cluster": {"internal/daemon", "bench/scale"},
}

// cliNever lists the parts of the daemons that the CLI must not import: it parses,
// calls package daemon or the admin API client, and prints. internal/release (a leaf)
// is not among them: `shoal deploy` builds the artifact where it runs and uploads it.
var cliNever = []string{"internal/controller", "internal/uisource", "internal/lb",
	"internal/pool", "internal/health", "internal/runtime",
	"internal/dashboard", "internal/timeseries", "internal/reconcile", "internal/rollout",
	"internal/autoscale", "internal/hooks", "internal/agent", "internal/fleet"}

// cliViolations reports every import of cliNever by the CLI.
func cliViolations(pkgs map[string]pkg) []string {
	var bad []string
	for _, imp := range pkgs["internal/cli"].Imports {
		if slices.Contains(cliNever, imp) {
			bad = append(bad, fmt.Sprintf("internal/cli imports %s; the CLI reaches the daemons through internal/daemon (docs/ARCHITECTURE.md, dependency direction)", imp))
		}
	}
	return bad
}

// layerViolations reports every import outside the allowed set of its package.
func layerViolations(pkgs map[string]pkg) []string {
	var bad []string
	for name, ok := range allowed {
		p, found := pkgs[name]
		if !found {
			bad = append(bad, name+": named in the rules but not in the module; update the rules and docs/ARCHITECTURE.md")
			continue
		}
		for _, imp := range p.Imports {
			if anyoneMayImport(imp) && name != imp {
				continue
			}
			if !slices.Contains(ok, imp) {
				bad = append(bad, fmt.Sprintf("%s imports %s; allowed: %v (docs/ARCHITECTURE.md, package table)", name, imp, ok))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// anyoneMayImport reports whether every package may import imp: the leaves that
// hold no behaviour of a part, only files written atomically and the vocabulary.
func anyoneMayImport(imp string) bool {
	return imp == "internal/atomicfile" || imp == "internal/api"
}

// importerViolations reports every import of a bounded package by one not allowed to.
func importerViolations(pkgs map[string]pkg) []string {
	var bad []string
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			ok, bounded := importers[imp]
			if bounded && !slices.Contains(ok, p.ImportPath) {
				bad = append(bad, fmt.Sprintf("%s imports %s; only %v may (docs/ARCHITECTURE.md, dependency direction)", p.ImportPath, imp, ok))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func TestImportsStayWithinTheirLayer(t *testing.T) {
	for _, v := range layerViolations(ours(t)) {
		t.Error(v)
	}
}

func TestDaemonsAreComposedOnlyByTheCLI(t *testing.T) {
	for _, v := range importerViolations(ours(t)) {
		t.Error(v)
	}
}

func TestCLIComposesNoDaemon(t *testing.T) {
	for _, v := range cliViolations(ours(t)) {
		t.Error(v)
	}
}

func TestEveryInternalPackageHasARule(t *testing.T) {
	for name := range ours(t) {
		if !strings.HasPrefix(name, "internal/") || strings.Count(name, "/") > 1 {
			continue // sub-packages (dashboard/demo) belong to their parent
		}
		if _, ok := allowed[name]; !ok && name != "internal/cli" {
			t.Errorf("%s has no import rule; add it here and a row to the package table in docs/ARCHITECTURE.md", name)
		}
	}
}

// TestRulesCatchViolations keeps the checks honest on a made-up module in which the
// balancer imports the store, the dashboard imports the controller and the
// vocabulary (a leaf that everyone imports) imports the store.
func TestRulesCatchViolations(t *testing.T) {
	pkgs := make(map[string]pkg)
	for name := range allowed {
		pkgs[name] = pkg{ImportPath: name, Imports: []string{"internal/api", "internal/atomicfile"}}
	}
	pkgs["internal/atomicfile"] = pkg{ImportPath: "internal/atomicfile"}
	pkgs["internal/api"] = pkg{ImportPath: "internal/api", Imports: []string{"internal/store"}}
	pkgs["internal/lb"] = pkg{ImportPath: "internal/lb", Imports: []string{"internal/pool", "internal/store"}}
	pkgs["internal/dashboard"] = pkg{ImportPath: "internal/dashboard", Imports: []string{"internal/controller", "internal/timeseries"}}
	layer := layerViolations(pkgs)
	if len(layer) != 3 || !strings.HasPrefix(layer[0], "internal/api imports internal/store") ||
		!strings.HasPrefix(layer[1], "internal/dashboard imports internal/controller") ||
		!strings.HasPrefix(layer[2], "internal/lb imports internal/store") {
		t.Errorf("layer violations = %q; want the vocabulary's store, the dashboard's controller and the balancer's store", layer)
	}
	imp := importerViolations(pkgs)
	if len(imp) != 1 || !strings.HasPrefix(imp[0], "internal/dashboard imports internal/controller") {
		t.Errorf("importer violations = %q; want the dashboard's controller", imp)
	}
	pkgs["internal/cli"] = pkg{ImportPath: "internal/cli", Imports: []string{"internal/config", "internal/daemon", "internal/lb"}}
	if cli := cliViolations(pkgs); len(cli) != 1 || !strings.HasPrefix(cli[0], "internal/cli imports internal/lb") {
		t.Errorf("cli violations = %q; want the CLI's balancer", cli)
	}
}
