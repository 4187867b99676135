package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/lb"
)

// Defaults of shoal.yaml, documented in docs/configuration.md.
const (
	DefaultBalancerListen = "127.0.0.1:8080"
	DefaultAdminListen    = "127.0.0.1:9090"
	DefaultDataDir        = ".shoal"
	DefaultKeepReleases   = 5
	appMaxGroupSize       = 1000
)

// applyDefaults fills every setting the file left out. Settings written in
// the file, even as zero, are left for validate to judge.
func (a *App) applyDefaults(d *document) {
	set := func(path string, apply func()) {
		if !d.has(path) {
			apply()
		}
	}
	set("runtime", func() { a.Runtime = RuntimeProcess })
	if a.Runtime == RuntimeDocker && a.Build == nil {
		a.Build = &AppBuild{}
	}
	if a.Build != nil {
		set("build.output", func() { a.Build.Output = "." })
		if a.Runtime == RuntimeDocker {
			set("build.dockerfile", func() { a.Build.Dockerfile = filepath.Join(a.Build.Output, "Dockerfile") })
		}
	}
	set("run.stop_signal", func() { a.Run.StopSignal = "SIGTERM" })
	set("run.stop_timeout", func() { a.Run.StopTimeout = Duration(10 * time.Second) })

	h := &a.Health
	set("health.path", func() { h.Path = "/" })
	set("health.interval", func() { h.Interval = Duration(2 * time.Second) })
	set("health.timeout", func() { h.Timeout = Duration(time.Second) })
	set("health.healthy_threshold", func() { h.HealthyThreshold = 1 })
	set("health.unhealthy_threshold", func() { h.UnhealthyThreshold = 3 })
	set("health.grace", func() { h.Grace = Duration(60 * time.Second) })

	g := &a.Group
	set("group.min", func() { g.Min = 1 })
	set("group.desired", func() { g.Desired = g.Min })
	set("group.max", func() { g.Max = max(1, g.Min, g.Desired) })
	set("group.max_replacing", func() { g.MaxReplacing = 2 })

	b := &a.Balancer
	set("balancer.listen", func() { b.Listen = DefaultBalancerListen })
	set("balancer.algorithm", func() { b.Algorithm = AlgorithmRoundRobin })
	set("balancer.drain_timeout", func() { b.DrainTimeout = Duration(30 * time.Second) })
	set("balancer.path", func() { b.Path = "/" })
	set("admin.listen", func() { a.Admin.Listen = DefaultAdminListen })
	set("data_dir", func() { a.DataDir = DefaultDataDir })
	set("keep_releases", func() { a.KeepReleases = DefaultKeepReleases })
	set("run.root_url", func() { a.Run.RootURL = defaultRootURL(b.Listen) })
}

// appChecker validates an App against its document.
type appChecker struct {
	a     *App
	d     *document
	extra Problems // problems located in other files (secrets, settings)
}

// failed reports whether decoding already reported a problem at path, at
// one of its parents or under it, so that validation does not pile a
// second message on the same spot.
func (c *appChecker) failed(path string) bool {
	for _, p := range c.d.probs {
		if p.Path == "" || p.Path == path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(p.Path, path+".") || strings.HasPrefix(p.Path, path+"[") {
			return true
		}
	}
	return false
}

// check reports msg at path when bad is true and decoding left path alone.
func (c *appChecker) check(bad bool, path, format string, args ...any) {
	if bad && !c.failed(path) {
		c.d.errorf(path, format, args...)
	}
}

// display is how a file named in shoal.yaml is shown in messages: next to
// the config file as the user named it.
func (c *appChecker) display(rel string) string {
	if filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(filepath.Dir(c.d.file), rel)
}

// validate checks everything, recording problems in d, then resolves paths.
func (a *App) validate(d *document) Problems {
	c := &appChecker{a: a, d: d}
	c.check(a.Name == "", "app", "the app name is required (lowercase letters, digits and dashes)")
	c.check(a.Name != "" && !appNameRe.MatchString(a.Name), "app",
		"invalid app name %q (1-63 lowercase letters, digits and dashes, not starting or ending with a dash)", a.Name)
	c.check(a.Runtime != RuntimeProcess && a.Runtime != RuntimeDocker, "runtime", "unknown runtime %q (use %q or %q)", a.Runtime, RuntimeProcess, RuntimeDocker)
	c.build()
	c.run()
	c.health()
	c.group()
	c.balancer()
	c.check(a.DataDir == "", "data_dir", "must not be empty (default %q)", DefaultDataDir)
	c.check(a.KeepReleases < 1, "keep_releases", "must be at least 1 (the current release), got %d", a.KeepReleases)
	if len(d.probs) == 0 && len(c.extra) == 0 {
		a.resolvePaths()
	}
	return c.extra
}

func (a *App) resolvePaths() {
	a.DataDir = a.path(a.DataDir)
	if a.Build != nil {
		a.Build.Output = a.path(a.Build.Output)
		if a.Build.Dockerfile != "" {
			a.Build.Dockerfile = a.path(a.Build.Dockerfile)
		}
	}
	a.Run.SecretsFile = a.path(a.Run.SecretsFile)
	a.Run.Settings = a.path(a.Run.Settings)
	if s := a.Balancer.Sticky; s != nil {
		s.SecretFile = a.path(s.SecretFile)
	}
}

func (c *appChecker) build() {
	b := c.a.Build
	if b == nil {
		return
	}
	c.check(b.Output == "", "build.output", "must not be empty (use \".\" for the app folder)")
	if b.Command == "" && b.Output != "" && !c.failed("build.output") && !c.a.sent {
		fi, err := os.Stat(c.a.path(b.Output))
		switch {
		case err != nil:
			c.d.errorf("build.output", "%s does not exist (with no build.command, the output must already be there)", b.Output)
		case !fi.IsDir():
			c.d.errorf("build.output", "%s is not a directory", b.Output)
		}
	}
	for _, k := range appSortedKeys(b.Env) {
		c.check(!appEnvNameRe.MatchString(k), "build.env."+k, "invalid variable name %q (use letters, digits and _, not starting with a digit)", k)
	}
	for i, p := range b.Exclude {
		c.check(strings.TrimSpace(p) == "", fmt.Sprintf("build.exclude[%d]", i), "must not be empty")
	}
	c.dockerBuild(b)
	c.check(b.MaxUnpackedFiles < 0, "build.max_unpacked_files", "must not be negative (0 means 1048576), got %d", b.MaxUnpackedFiles)
}

// dockerBuild checks the image settings of build: only with runtime:
// docker, and the Dockerfile inside the build context (the output folder).
func (c *appChecker) dockerBuild(b *AppBuild) {
	if !c.a.Docker() {
		for _, k := range []string{"build.dockerfile", "build.target", "build.args", "build.registry"} {
			c.check(c.d.has(k), k, "only with runtime: docker (runtime is %q)", c.a.Runtime)
		}
		return
	}
	c.check(strings.TrimSpace(b.Dockerfile) == "", "build.dockerfile", "must not be empty (default \"Dockerfile\" in build.output)")
	if b.Dockerfile != "" && b.Output != "" {
		rel, err := filepath.Rel(c.a.path(b.Output), c.a.path(b.Dockerfile))
		c.check(err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)), "build.dockerfile",
			"%s is outside the build context %s (build.output): the engine sees only that folder", b.Dockerfile, b.Output)
	}
	for _, k := range appSortedKeys(b.Args) {
		c.check(strings.TrimSpace(k) == "" || strings.ContainsAny(k, "= \t\n"), "build.args."+k, "invalid build argument name %q", k)
	}
	c.check(c.d.has("build.registry") && !validRegistry(b.Registry), "build.registry",
		"want host:port or host:port/path of a Docker registry (no scheme, lowercase path), got %q", b.Registry)
}

// validRegistry reports whether r names a registry as Docker's image
// references do: a host (with a dot or a port, or localhost) and an
// optional lowercase path.
func validRegistry(r string) bool {
	host, path, _ := strings.Cut(r, "/")
	if host == "" || strings.ContainsAny(r, " \t\n@") || strings.Contains(r, "://") || strings.HasSuffix(r, "/") {
		return false
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return false
	}
	for _, c := range path {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._-/", c)) {
			return false
		}
	}
	return true
}

func (c *appChecker) run() {
	r := &c.a.Run
	c.check(!c.a.Docker() && strings.TrimSpace(r.Command) == "", "run.command", "the command that starts one instance is required (it must listen on $PORT)")
	c.check(!c.a.Docker() && c.d.has("run.port"), "run.port", "only with runtime: docker (a process listens on $PORT)")
	c.check(r.Port < 0 || r.Port > 65535, "run.port", "must be a TCP port (1-65535), got %d", r.Port)
	names := map[string]string{} // variable -> where it is set
	for _, k := range appSortedKeys(r.Env) {
		p := "run.env." + k
		if why := envNameProblem(k); why != "" {
			c.check(true, p, "%s", why)
			continue
		}
		c.check(strings.ContainsRune(r.Env[k], 0), p, "the value contains a NUL byte")
		names[k] = "run.env"
	}
	c.a.fromHostAt = make([]Pos, len(r.EnvFromHost))
	for i, k := range r.EnvFromHost {
		p := fmt.Sprintf("run.env_from_host[%d]", i)
		c.a.fromHostAt[i] = c.d.at(p)
		if why := envNameProblem(k); why != "" {
			c.check(true, p, "%s", why)
			continue
		}
		if where, dup := names[k]; dup {
			c.check(true, p, "%s is already set in %s", k, where)
			continue
		}
		names[k] = "run.env_from_host"
	}
	if r.SecretsFile != "" && !c.failed("run.secrets_file") && !c.a.sent {
		c.secrets(names)
	}
	if r.Settings != "" && !c.failed("run.settings") {
		if where, dup := names["METEOR_SETTINGS"]; dup {
			c.d.errorf("run.settings", "METEOR_SETTINGS is also set in %s; keep one", where)
		}
	}
	if r.Settings != "" && !c.failed("run.settings") && !c.a.sent {
		data, err := os.ReadFile(c.a.path(r.Settings))
		if err != nil {
			c.d.errorf("run.settings", "cannot read the settings file: %s", appFileErr(c.display(r.Settings), err))
		} else if s, p := parseSettings(c.display(r.Settings), data); p != nil {
			c.extra = append(c.extra, *p)
		} else {
			c.a.settings = s
		}
	}
	if r.RootURL != "" && !c.failed("run.root_url") {
		u, err := url.Parse(r.RootURL)
		c.check(err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "",
			"run.root_url", "must be an absolute http:// or https:// URL, got %q", r.RootURL)
	}
	c.check(appSignalName(r.StopSignal) == "", "run.stop_signal",
		"unknown stop signal %q (use SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 or SIGUSR2)", r.StopSignal)
	if s := appSignalName(r.StopSignal); s != "" {
		r.StopSignal = s
	}
	c.check(r.StopTimeout <= 0, "run.stop_timeout", "must be more than 0, got %s", r.StopTimeout.D())
	// The decoder refuses .nan and .inf already.
	c.check(r.CPU < 0, "run.cpu",
		"must be a number of cores such as 0.5 (0 declares nothing), got %v", r.CPU)
}

// secrets reads and checks run.secrets_file; names holds the variables set
// elsewhere.
func (c *appChecker) secrets(names map[string]string) {
	r := &c.a.Run
	data, err := os.ReadFile(c.a.path(r.SecretsFile))
	if err != nil {
		c.d.errorf("run.secrets_file", "cannot read the secrets file: %s", appFileErr(c.display(r.SecretsFile), err))
		return
	}
	file := c.display(r.SecretsFile)
	vars, probs := parseSecrets(file, data)
	c.extra = append(c.extra, probs...)
	line := map[string]int{}
	for i, l := range strings.Split(string(data), "\n") {
		name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "export "), "=")
		if _, ok := line[strings.TrimSpace(name)]; !ok {
			line[strings.TrimSpace(name)] = i + 1
		}
	}
	for _, v := range vars {
		if where, dup := names[v.Name]; dup {
			c.extra = append(c.extra, Problem{File: file, Pos: Pos{line[v.Name], 1}, Path: v.Name,
				Msg: fmt.Sprintf("%s is already set in %s", v.Name, where)})
			continue
		}
		names[v.Name] = "run.secrets_file"
	}
	c.a.secrets = vars
}

// appFileErr describes a file error with the file named as the user sees
// it rather than as the absolute path that was opened.
func appFileErr(name string, err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return name + ": " + pe.Err.Error()
	}
	return err.Error()
}

func (c *appChecker) health() {
	h := &c.a.Health
	c.check(!strings.HasPrefix(h.Path, "/"), "health.path", "must start with /, got %q", h.Path)
	c.check(strings.ContainsAny(h.Host, " /\r\n\t"), "health.host", "invalid host %q", h.Host)
	c.check(h.Interval <= 0, "health.interval", "must be more than 0, got %s", h.Interval.D())
	c.check(h.Timeout <= 0, "health.timeout", "must be more than 0, got %s", h.Timeout.D())
	c.check(h.Timeout > 0 && h.Interval > 0 && h.Timeout > h.Interval, "health.timeout",
		"must be at most health.interval (%s), got %s", h.Interval.D(), h.Timeout.D())
	c.check(h.HealthyThreshold < 1, "health.healthy_threshold", "must be at least 1, got %d", h.HealthyThreshold)
	c.check(h.UnhealthyThreshold < 1, "health.unhealthy_threshold", "must be at least 1, got %d", h.UnhealthyThreshold)
	c.check(h.Grace < 0, "health.grace", "must not be negative, got %s", h.Grace.D())
}

func (c *appChecker) group() {
	g := c.a.Group
	c.check(g.Min < 0, "group.min", "must not be negative, got %d", g.Min)
	c.check(g.Max < 1, "group.max", "must be at least 1, got %d", g.Max)
	c.check(g.Max > appMaxGroupSize, "group.max", "must be at most %d, got %d", appMaxGroupSize, g.Max)
	c.check(g.Min >= 0 && g.Max >= 1 && g.Min > g.Max, "group.min", "group.min (%d) is larger than group.max (%d)", g.Min, g.Max)
	if g.Min >= 0 && g.Min <= g.Max && !c.failed("group.min") && !c.failed("group.max") {
		c.check(g.Desired < g.Min || g.Desired > g.Max, "group.desired",
			"must be between group.min and group.max (%d-%d), got %d", g.Min, g.Max, g.Desired)
	}
	c.check(g.MaxReplacing < 1, "group.max_replacing", "must be at least 1, got %d", g.MaxReplacing)
}

func (c *appChecker) balancer() {
	b := &c.a.Balancer
	c.listen("balancer.listen", b.Listen)
	switch b.Algorithm {
	case AlgorithmRoundRobin, AlgorithmLeastRequests, AlgorithmP2C:
	default:
		c.check(true, "balancer.algorithm", "unknown algorithm %q (use %s, %s or %s)",
			b.Algorithm, AlgorithmRoundRobin, AlgorithmLeastRequests, AlgorithmP2C)
	}
	if p, err := lb.ParseProtocol(b.Protocol); err != nil {
		c.check(true, "balancer.protocol", "%v", err)
	} else {
		c.check(p == lb.ProtocolH2, "balancer.protocol", "h2 is HTTP/2 over TLS, which an app's instances are not reached with; use h2c (HTTP/2 without TLS)")
	}
	if s := b.Sticky; s != nil {
		c.check(s.Cookie != "" && !appCookieRe.MatchString(s.Cookie), "balancer.sticky.cookie",
			"invalid cookie name %q (letters, digits and !#$%%&'*+-.^_`|~)", s.Cookie)
		c.check(s.TTL < 0, "balancer.sticky.ttl", "must not be negative, got %s", s.TTL.D())
		for i, p := range s.SockJSPrefixes {
			c.check(!strings.HasPrefix(p, "/"), fmt.Sprintf("balancer.sticky.sockjs_prefixes[%d]", i), "must start with /, got %q", p)
		}
		if s.SecretFile != "" && !c.failed("balancer.sticky.secret_file") && !c.a.sent {
			key, err := readStickySecret(c.a.path(s.SecretFile), s.SecretFile)
			if err != nil {
				c.d.errorf("balancer.sticky.secret_file", "%v", err)
			}
			s.secret = key
		}
	}
	c.check(b.DrainTimeout <= 0, "balancer.drain_timeout", "must be more than 0, got %s", b.DrainTimeout.D())
	c.check(b.SlowStart < 0, "balancer.slow_start", "must not be negative, got %s", b.SlowStart.D())
	for i, p := range b.LongLivedPaths {
		c.check(!strings.HasPrefix(p, "/"), fmt.Sprintf("balancer.long_lived_paths[%d]", i), "must start with /, got %q", p)
	}
	b.Compression.check("balancer.compression", c.d.errorf)
	b.Cache.check("balancer.cache", c.d.errorf)
	seen := map[string]int{}
	for i, h := range b.Hosts {
		path := fmt.Sprintf("balancer.hosts[%d]", i)
		if err := lb.CheckHostPattern(h); err != nil || h == "" {
			c.d.errorf(path, "%q is not a host name or *.domain wildcard (such as web.example.com or *.web.example.com)", h)
			continue
		}
		if j, dup := seen[strings.ToLower(h)]; dup {
			c.d.errorf(path, "%q is listed already as balancer.hosts[%d]", h, j)
		}
		seen[strings.ToLower(h)] = i
	}
	c.check(!strings.HasPrefix(b.Path, "/"), "balancer.path", "must start with /, got %q", b.Path)
	c.listen("admin.listen", c.a.Admin.Listen)
	if !c.failed("admin.listen") && !c.failed("balancer.listen") && b.Listen == c.a.Admin.Listen && !strings.HasSuffix(b.Listen, ":0") {
		c.d.errorf("admin.listen", "the admin API and the balancer both listen on %s", b.Listen)
	}
}

// listen checks a host:port address to bind.
func (c *appChecker) listen(path, addr string) {
	if c.failed(path) {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.d.errorf(path, "invalid address %q (use host:port, such as 127.0.0.1:8080 or :80)", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		c.d.errorf(path, "invalid port %q in %q", port, addr)
		return
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			c.d.errorf(path, "invalid host %q in %q (use an IP address, localhost, or nothing for every address)", host, addr)
		}
	}
}

func appSortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
