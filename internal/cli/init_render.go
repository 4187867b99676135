package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// render writes the starter shoal.yaml of g: every guess in force, the
// other keys present as comments with their defaults.
func (g *guess) render() string {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	author := g.author
	if author == "" {
		author = "shoal init"
	}
	line("# shoal.yaml for %s, written by \"%s\" (%s).", g.name, author, g.why)
	line("# Every key is described in docs/configuration.md. Lines marked \"guess\" are")
	line("# what %s inferred: check them before \"shoal up\".", author)
	for _, h := range g.header {
		line("# %s", h)
	}
	line("")
	line("app: %s", g.name)
	if g.runtime != "" {
		line("runtime: %s   # a container per instance, of an image built from build.dockerfile", g.runtime)
	}
	line("")
	if g.build != "" {
		line("# Built once per source change on this machine; instances never build.")
		line("build:")
		line("  command: %s   # guess", yamlScalar(g.build))
		line("  output: %s   # the folder that becomes the release", yamlScalar(g.output))
		if g.dockerfile != "" {
			line("  dockerfile: %s   # inside output, the image's build context", yamlScalar(g.dockerfile))
		}
		if len(g.exclude) > 0 {
			line("  exclude: [%s]   # left out of the release and of the source fingerprint", yamlList(g.exclude))
		} else {
			line("  # exclude: [tmp]   # paths left out of the release")
		}
	} else {
		line("# No build: the folder is shipped as it is. To build first, add:")
		line("# build:")
		line("#   command: make")
		line("#   output: dist")
	}
	line("")
	line("run:")
	for _, n := range g.notes {
		line("  # %s", n)
	}
	switch {
	case g.run != "":
		line("  # Runs in the release folder through /bin/sh -c; must listen on $PORT.")
		line("  command: %s   # guess", yamlScalar(g.run))
	case g.runtime != "":
		line("  # command: node main.js   # replaces the image's CMD; empty keeps it")
	}
	if g.port != 0 {
		line("  port: %d   # the port the app listens on inside its container; PORT is set to it", g.port)
	}
	if g.cpu != 0 {
		line("  cpu: %s", strconv.FormatFloat(g.cpu, 'g', -1, 64))
	}
	if g.memory != "" {
		line("  memory: %s", yamlScalar(g.memory))
	}
	if len(g.literal) > 0 {
		line("  env:")
		keys := make([]string, 0, len(g.literal))
		for k := range g.literal {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if n := g.envNotes[k]; n != "" {
				line("    # %s: %s.", k, n)
			}
			line("    %s: %s", k, yamlScalar(g.literal[k]))
		}
	} else {
		line("  # env: {NODE_ENV: production}")
	}
	if len(g.hostEnv) > 0 {
		line("  # Copied from shoal's own environment; shoal up fails if one is not set.")
		line("  env_from_host: [%s]", strings.Join(g.hostEnv, ", "))
	} else {
		line("  # env_from_host: [MONGO_URL]   # copied from shoal's environment")
	}
	if g.secrets != "" {
		line("  secrets_file: %s   # KEY=VALUE lines; values are never printed", yamlScalar(g.secrets))
	} else {
		line("  # secrets_file: secrets.env   # KEY=VALUE lines; values are never printed")
	}
	if g.settings != "" {
		line("  settings: %s   # passed as METEOR_SETTINGS", yamlScalar(g.settings))
	} else if g.kind == "meteor" {
		line("  # settings: settings.json   # passed as METEOR_SETTINGS")
	}
	switch {
	case g.rootURL != "":
		line("  root_url: %s   # ROOT_URL: the public URL of the app", yamlScalar(g.rootURL))
	case g.kind == "meteor":
		line("  # CHANGE ME before serving other machines: the public URL (ROOT_URL), which")
		line("  # Meteor builds absolute links from; the default is http://<balancer.listen>.")
		line("  # root_url: https://app.example.com")
	default:
		line("  # root_url: https://app.example.com   # ROOT_URL; default http://<balancer.listen>")
	}
	line("  # stop_signal: SIGTERM")
	line("  # stop_timeout: 10s")
	line("")
	line("health:")
	line("  path: /   # guess: a path that answers 2xx or 3xx once the app is ready")
	line("  # interval: 2s")
	line("  # timeout: 1s")
	line("  # healthy_threshold: 1")
	line("  # unhealthy_threshold: 3")
	switch {
	case g.grace != "":
		line("  grace: %s   # %s", g.grace, g.graceNote)
	case g.graceNote != "":
		line("  grace: 120s   # %s", g.graceNote)
	default:
		line("  # grace: 60s   # failures while an instance boots do not count")
	}
	line("")
	line("group:")
	line("  min: 1")
	line("  max: 4")
	line("  desired: 2   # two instances, so one can fail or restart while the other serves")
	line("")
	line("balancer:")
	line("  listen: 127.0.0.1:8080   # use :80 or 0.0.0.0:8080 to serve other machines")
	line("  # algorithm: round_robin   # or least_requests, p2c")
	if len(g.hosts) > 0 {
		line("  hosts: [%s]   # the host names shoal server's balancer routes to this app", yamlList(g.hosts))
	} else {
		line("  # hosts: [app.example.com]   # shoal server: the host names routed to this app")
	}
	if g.sockjs {
		line("  # Meteor's SockJS fallbacks need every request of a session on one instance.")
		line("  sticky:")
		line("    sockjs_prefixes: [/sockjs]")
		if g.sticky {
			line("    cookie: shoal_sticky   # mup's proxy.stickySessions")
		} else {
			line("    # cookie: shoal_sticky")
		}
		line("    # secret_file: sticky.key   # the cookie's key, to share with other balancers; default: kept in the store")
	} else {
		line("  # sticky: {cookie: shoal_sticky}")
	}
	line("  # drain_timeout: 30s")
	line("")
	line("# admin:")
	line("#   listen: 127.0.0.1:9090   # the admin API of the shoal CLI; loopback by default")
	line("# data_dir: .shoal   # store, artifacts and logs; never shipped")
	line("# keep_releases: 5")
	if len(g.tail) > 0 {
		line("")
		for _, t := range g.tail {
			if t == "" {
				line("#")
				continue
			}
			line("# %s", t)
		}
	}
	return b.String()
}

// yamlList writes items as the inside of a YAML flow sequence.
func yamlList(items []string) string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = yamlScalar(s)
	}
	return strings.Join(out, ", ")
}
