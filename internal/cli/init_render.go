package cli

import (
	"fmt"
	"sort"
	"strings"
)

// render writes the starter shoal.yaml of g: every guess in force, the
// other keys present as comments with their defaults.
func (g *guess) render() string {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("# shoal.yaml for %s, written by \"shoal init\" (%s).", g.name, g.why)
	line("# Every key is described in docs/configuration.md. Lines marked \"guess\" are")
	line("# what init inferred from the folder: check them before \"shoal up\".")
	line("")
	line("app: %s", g.name)
	line("")
	if g.build != "" {
		line("# Built once per source change on this machine; instances never build.")
		line("build:")
		line("  command: %s   # guess", yamlScalar(g.build))
		line("  output: %s   # the folder that becomes the release", yamlScalar(g.output))
		line("  # exclude: [tmp]   # paths left out of the release")
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
	line("  # Runs in the release folder through /bin/sh -c; must listen on $PORT.")
	line("  command: %s   # guess", yamlScalar(g.run))
	if len(g.literal) > 0 {
		line("  env:")
		keys := make([]string, 0, len(g.literal))
		for k := range g.literal {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
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
	line("  # root_url: https://app.example.com   # ROOT_URL; default http://<balancer.listen>")
	line("  # stop_signal: SIGTERM")
	line("  # stop_timeout: 10s")
	line("")
	line("health:")
	line("  path: /   # guess: a path that answers 2xx or 3xx once the app is ready")
	line("  # interval: 2s")
	line("  # timeout: 1s")
	line("  # healthy_threshold: 1")
	line("  # unhealthy_threshold: 3")
	if g.graceNote != "" {
		line("  grace: 120s   # %s", g.graceNote)
	} else {
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
	if g.sockjs {
		line("  # Meteor's SockJS fallbacks need every request of a session on one instance.")
		line("  sticky:")
		line("    sockjs_prefixes: [/sockjs]")
		line("    # cookie: shoal_sticky")
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
	return b.String()
}
