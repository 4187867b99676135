package config

import (
	"fmt"
	"os"
	"path/filepath"
)

// AppFileName is the conventional name of an app's configuration file.
const AppFileName = "shoal.yaml"

// App is one app's configuration, shoal.yaml: how to build it, how to run
// it, how to tell that an instance is healthy, how many instances to keep,
// and the balancer and admin API in front of them.
//
// An App returned by Load or Parse is complete and valid: defaults are
// applied, paths are absolute, and the settings and secrets files have been
// read and checked. It is a plain value; treat it as immutable and share
// it freely between goroutines.
type App struct {
	// Name of the app: 1 to 63 characters of lowercase letters, digits and
	// dashes, starting with a letter or digit. It names the group, the
	// releases and the instances. Required.
	Name string `yaml:"app"`

	// Runtime is how instances run: RuntimeProcess (default), a process
	// per instance in the unpacked artifact, or RuntimeDocker, a container
	// per instance of an image built from the app's Dockerfile (the
	// artifact is the saved image; see AppBuild.Dockerfile).
	Runtime string `yaml:"runtime"`

	// Build says how to turn the app folder into what instances run.
	// Absent means the folder is shipped as it is.
	Build *AppBuild `yaml:"build"`

	// Run says how to start one instance. Required (run.command).
	Run AppRun `yaml:"run"`

	// Health is the active health check of every instance.
	Health AppHealth `yaml:"health"`

	// Group sizes the set of instances.
	Group AppGroup `yaml:"group"`

	// Balancer is the load balancer in front of the instances.
	Balancer AppBalancer `yaml:"balancer"`

	// Admin is the admin API that the shoal CLI talks to.
	Admin AppAdmin `yaml:"admin"`

	// DataDir holds Shoal's state: the store, artifacts, unpacked releases
	// and instance logs. Relative to the folder of shoal.yaml; default
	// ".shoal". It is never shipped inside a release.
	DataDir string `yaml:"data_dir"`

	// KeepReleases is how many releases (and their artifacts) are kept for
	// rollback, the current one included. Default 5, at least 1.
	KeepReleases int `yaml:"keep_releases"`

	// Deploy is the deploy policy and hooks (see AppDeploy).
	Deploy AppDeploy `yaml:"deploy"`

	// Autoscale changes the desired count from the balancer's own metrics
	// (see AppAutoscale). Absent means no auto scaling.
	Autoscale *AppAutoscale `yaml:"autoscale"`

	// File is the absolute path of the file the App was read from. Set by
	// Load and Parse, never read from the file.
	File string `yaml:"-"`
	// Dir is the absolute app folder: the folder of File. Every relative
	// path in the file is taken relative to it.
	Dir string `yaml:"-"`

	file       string   // the file name given to Parse, for messages
	text       string   // the text the App was parsed from (Text)
	sent       bool     // parsed by ParseSent: no file of the app folder read
	settings   string   // contents of run.settings, compact JSON; "" when unset
	secrets    []EnvVar // parsed run.secrets_file, in file order
	fromHostAt []Pos    // position of each run.env_from_host entry
}

// Runtimes of app.runtime.
const (
	RuntimeProcess = "process"
	RuntimeDocker  = "docker"
)

// Docker reports whether the app runs as containers (runtime: docker).
func (a *App) Docker() bool { return a.Runtime == RuntimeDocker }

// AppBuild says how an app is built. Building happens once per source
// change, on the machine that runs shoal, never on each instance.
type AppBuild struct {
	// Command builds the app. It runs in the app folder through /bin/sh -c
	// with shoal's own environment plus Env. Empty means nothing to build:
	// Output is shipped as it is and must exist when the file is loaded.
	Command string `yaml:"command"`

	// Output is the directory that becomes the release artifact, relative
	// to the app folder; default "." (the whole folder). It must exist
	// after Command has run.
	Output string `yaml:"output"`

	// Env are extra variables for the build command only (literal values),
	// such as CGO_ENABLED: "0".
	Env map[string]string `yaml:"env"`

	// Exclude lists paths (relative to the app folder; a directory excludes
	// everything under it) that are left out of the artifact and of the
	// source fingerprint that decides whether to rebuild. ".git", DataDir,
	// run.secrets_file and balancer.sticky.secret_file are always excluded.
	Exclude []string `yaml:"exclude"`

	// Dockerfile is the Dockerfile that builds the image (runtime:
	// docker), relative to the app folder and inside Output, which is the
	// build context (as Kamal's builder.dockerfile and builder.context);
	// default "Dockerfile" in Output. Only with runtime: docker.
	Dockerfile string `yaml:"dockerfile"`

	// Target is the stage of a multi-stage Dockerfile to build (docker
	// build --target); default the last one. Only with runtime: docker.
	Target string `yaml:"target"`

	// Args are the image's build arguments (docker build --build-arg,
	// Kamal's builder.args), literal values. Only with runtime: docker.
	Args map[string]string `yaml:"args"`

	// Registry is a Docker registry ("host:port", or "host:port/path")
	// that `shoal deploy` pushes the image to (as <registry>/<app>); the
	// release then names the image by its registry digest and hosts pull
	// it from there instead of fetching its layers from the server. The
	// engine where the CLI runs and every host's engine must reach it
	// without credentials (a registry on 127.0.0.1 is plain HTTP to
	// Docker; any other must serve HTTPS or be listed in the engines'
	// insecure-registries). Empty (the default): the image travels
	// through the server, by layer. Only with runtime: docker.
	Registry string `yaml:"registry"`

	// MaxUnpackedSize bounds the total size of the files of one release
	// once unpacked, checked when it is built and when it is unpacked (an
	// artifact of a few MB can hold GBs of zeros); 0 means 4GiB.
	MaxUnpackedSize Size `yaml:"max_unpacked_size"`

	// MaxUnpackedFiles bounds the entries (files, directories, links) of
	// one release; 0 means 1048576.
	MaxUnpackedFiles int `yaml:"max_unpacked_files"`
}

// AppRun says how an instance runs.
type AppRun struct {
	// Command starts one instance. It runs through /bin/sh -c in the
	// unpacked release directory (the build output). The app must listen
	// on the port in $PORT, which Shoal chooses per instance. Required,
	// except with runtime: docker, where it is optional and replaces the
	// image's CMD, split into words at blanks (no shell, no quoting).
	Command string `yaml:"command"`

	// Port is the port the app listens on inside its container (runtime:
	// docker; Kamal's proxy.app_port), published on a port Shoal chooses
	// per instance; PORT is set to it. Default 0: the container listens on
	// the published port's number, read from $PORT as with processes.
	Port int `yaml:"port"`

	// Env are variables with literal values. PORT, ROOT_URL and names
	// starting with SHOAL_ are reserved; use root_url and settings instead.
	Env map[string]string `yaml:"env"`

	// EnvFromHost names variables copied from the deployer's environment
	// each time a release is made (for example MONGO_URL): that of `shoal
	// deploy`, or of `shoal up` for the first release. A name that is not
	// set there is an error. Their values are treated as secrets.
	EnvFromHost []string `yaml:"env_from_host"`

	// SecretsFile is a file of KEY=VALUE lines (blank lines and lines
	// starting with # are ignored; a value may be wrapped in single or
	// double quotes), relative to the app folder. Its values reach the
	// instances but are redacted from every output of Shoal, and the file
	// is never shipped inside a release. Keep it out of version control.
	SecretsFile string `yaml:"secrets_file"`

	// Settings is a JSON file whose contents are passed to each instance
	// as METEOR_SETTINGS (Meteor's --settings). It must be valid JSON. Its
	// value is treated as a secret, since Meteor settings usually carry keys.
	Settings string `yaml:"settings"`

	// RootURL is passed as ROOT_URL: the public URL of the app, which
	// Meteor uses to build absolute links. Default "http://<balancer
	// listen address>" (with "localhost" for an unspecified host).
	RootURL string `yaml:"root_url"`

	// StopSignal asks an instance to stop after it has been drained:
	// SIGTERM (default), SIGINT, SIGQUIT, SIGHUP, SIGUSR1 or SIGUSR2 (the
	// SIG prefix is optional).
	StopSignal string `yaml:"stop_signal"`

	// StopTimeout is how long an instance may take to exit after
	// StopSignal before it and its children are killed. Default 10s.
	StopTimeout Duration `yaml:"stop_timeout"`

	// CPU (cores, such as 0.5) and Memory (bytes: "256MiB", "1GiB") are
	// what one instance declares it needs. A fleet (`shoal server`) places
	// an instance only on a host whose capacity left fits both; `shoal
	// up`'s one machine ignores them, except with runtime: docker, where
	// they are the container's limits. Zero (the default) declares nothing.
	// A change of either is a change of the run configuration: a
	// config-only release.
	CPU    float64 `yaml:"cpu"`
	Memory Size    `yaml:"memory"`
}

// AppHealth is the active HTTP health check of an instance. An instance
// receives traffic only after it has passed HealthyThreshold checks in a row,
// and leaves the pool after UnhealthyThreshold failures in a row (then it is
// replaced).
type AppHealth struct {
	// Path is requested with GET on each instance; default "/".
	Path string `yaml:"path"`

	// Host is the Host header of each check, for an app that answers by
	// virtual host; default the instance's host:port. As health.host in
	// lb.yaml.
	Host string `yaml:"host"`

	// Interval between two checks of one instance; default 2s.
	Interval Duration `yaml:"interval"`

	// Timeout of one check, at most Interval; default 1s.
	Timeout Duration `yaml:"timeout"`

	// HealthyThreshold is the number of passes in a row that put an
	// instance in service; default 1, so a new instance serves at once.
	HealthyThreshold int `yaml:"healthy_threshold"`

	// UnhealthyThreshold is the number of failures in a row that take an
	// instance out of service; default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`

	// Grace is how long a starting instance may fail its checks before it
	// counts as failed, for apps that boot slowly (a Meteor server can take
	// tens of seconds). Default 60s. Zero means no grace.
	Grace Duration `yaml:"grace"`

	// Statuses are the HTTP status codes that pass, as a comma-separated
	// list of codes and ranges: "200-399" (default), "200,204".
	Statuses AppStatuses `yaml:"statuses"`
}

// AppGroup sizes the group of instances of the app.
type AppGroup struct {
	// Min is the fewest instances the group may be scaled to; default 1.
	// Zero is allowed (an app that can be scaled to nothing).
	Min int `yaml:"min"`

	// Max is the most instances the group may be scaled to; default the
	// larger of Min and Desired.
	Max int `yaml:"max"`

	// Desired is the number of instances to run, between Min and Max;
	// default Min. It is the starting point: "shoal scale" changes it and
	// the change is kept across restarts.
	Desired int `yaml:"desired"`

	// MaxReplacing bounds how many instances are launched at once to
	// replace failed ones, to move instances off a drained host (shoal
	// hosts drain), or during a rollout; default 2.
	MaxReplacing int `yaml:"max_replacing"`
}

// AppBalancer is the load balancer in front of the group.
type AppBalancer struct {
	// Listen is the address clients connect to; default "127.0.0.1:8080".
	// Use ":80" or "0.0.0.0:8080" to accept connections from other machines.
	Listen string `yaml:"listen"`

	// Algorithm picks an instance for each request: round_robin (default),
	// least_requests or p2c (power of two choices weighted by latency).
	Algorithm string `yaml:"algorithm"`

	// Sticky pins a client to one instance. Absent means no stickiness.
	Sticky *AppSticky `yaml:"sticky"`

	// Protocol is how the balancer speaks to the instances: http1
	// (default, HTTP/1.1) or h2c (HTTP/2 without TLS, for gRPC servers and
	// apps that serve HTTP/2 only; trailers pass through, health checks
	// use it too).
	Protocol string `yaml:"protocol"`

	// DrainTimeout is how long a removed instance keeps serving its
	// requests and WebSockets in flight before they are closed; default 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`

	// SlowStart ramps a new instance's share of traffic from 10% to 100%
	// over this window, for apps that are slow until warm. Default 0 (off).
	SlowStart Duration `yaml:"slow_start"`

	// LongLivedPaths are path prefixes, each starting with "/", whose
	// requests the app holds open on purpose (long polls, streams). They
	// are kept out of the latency percentiles that latency autoscaling
	// policies and the dashboard read, and counted as held streams
	// instead. "/poll" matches "/poll" and "/poll/x", not "/polls"; a
	// prefix ending in "/" matches anything below it. Server-sent events
	// (text/event-stream), SockJS streaming and polling under
	// sticky.sockjs_prefixes, and socket.io polling are recognised
	// without being listed. Default none.
	LongLivedPaths []string `yaml:"long_lived_paths"`

	// Compression compresses the app's answers at the balancer: brotli,
	// zstd or gzip as the client accepts. Absent, text types (HTML, CSS,
	// JavaScript, JSON, SVG, ...) from 1KiB on are compressed at level 1;
	// enabled: false turns it off. The same keys as routes[].compression
	// in lb.yaml.
	Compression *Compression `yaml:"compression"`

	// Cache keeps answers the app marks shared and long-lived
	// (Cache-Control: public, max-age=31536000, immutable) at the
	// balancer and serves them without reaching an instance, until the
	// next release is activated. On unless enabled: false; the same keys as
	// routes[].cache in lb.yaml.
	Cache *Cache `yaml:"cache"`

	// Hosts are the host names whose requests `shoal server`'s balancer
	// sends to this app: exact names ("web.example.com") or wildcards of
	// one or more labels ("*.web.example.com"), matched without case and
	// without the port. Empty (the default) makes the app the server's
	// catch-all, which takes every host no other app names; a server
	// has at most one. `shoal up` serves every host whatever is set.
	Hosts []string `yaml:"hosts"`

	// Path is the path prefix, starting with "/", under which `shoal
	// server`'s balancer sends this app's hosts to it; "/api" matches
	// "/api" and "/api/x", not "/apis". Default "/". `shoal up` serves
	// every path.
	Path string `yaml:"path"`
}

// AppSticky configures session affinity.
type AppSticky struct {
	// Cookie is the name of the cookie the balancer sets to pin a client
	// to an instance. Empty means no cookie stickiness. The cookie value is
	// signed, so clients cannot choose an instance.
	Cookie string `yaml:"cookie"`

	// TTL is the cookie lifetime; default 0, a session cookie.
	TTL Duration `yaml:"ttl"`

	// SockJSPrefixes are path prefixes (Meteor: "/sockjs") under which
	// requests are pinned by their SockJS session id, since SockJS sends
	// no cookie. Works with or without Cookie.
	SockJSPrefixes []string `yaml:"sockjs_prefixes"`

	// SecretFile holds the key that signs the cookie: at least 16 bytes
	// (surrounding whitespace is trimmed), relative to the app folder; as
	// sticky.secret_file in lb.yaml. Empty (the default) means a key that
	// shoal generates once and keeps in its store. A file is what lets
	// several balancers share the key, so that a pin holds whichever one
	// a client reaches. It is read when the file is loaded and never
	// shipped inside a release; keep it out of version control.
	SecretFile string `yaml:"secret_file"`

	secret []byte // the key read from SecretFile; nil when unset
}

// Secret returns the key read from secret_file, or nil when the file
// names none (the caller then uses a key of its own).
func (s *AppSticky) Secret() []byte {
	if s == nil || s.secret == nil {
		return nil
	}
	return append([]byte(nil), s.secret...)
}

// AppAdmin is the admin HTTP API.
type AppAdmin struct {
	// Listen is the admin API address; default "127.0.0.1:9090". It
	// listens on loopback unless you write another address here; every
	// request needs the admin token either way.
	Listen string `yaml:"listen"`
}

// Load reads and validates the shoal.yaml at path. A configuration error
// is returned as Problems (every problem at once); a read error as a
// wrapped *os.PathError.
func Load(path string) (*App, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("load app config: %w", err)
	}
	return Parse(path, data, filepath.Dir(abs))
}

// Parse decodes and validates data, the contents of file (used in
// messages only). Relative paths in it are taken relative to dir, which
// should be absolute; the files it names (settings, secrets, build output)
// are read or checked there. It returns Problems when anything is wrong.
func Parse(file string, data []byte, dir string) (*App, error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	a := &App{}
	d := decode(file, data, a)
	if len(d.probs) > 0 && !d.has("app") && len(d.pos) <= 1 {
		return nil, d.sorted() // syntax error or empty file: nothing to validate
	}
	a.Dir = dir
	a.file = file
	a.File = file
	a.text = string(data)
	if !filepath.IsAbs(a.File) {
		a.File = filepath.Join(dir, filepath.Base(file))
	}
	return a.finish(d)
}

// ParseSent decodes and validates text, a shoal.yaml sent by `shoal deploy`
// from another machine, where it was the file named file (an absolute path
// there, used in messages only). It checks everything Parse checks except
// what needs the deployer's folder: it reads no file on this host, so
// build.output is not checked for existence, and run.secrets_file,
// run.settings and balancer.sticky.secret_file are kept as given (relative
// ones taken relative to file's folder, as names only) and never read.
// Their contents reach the daemon already resolved in the environment the
// CLI sends (see App.Env on the deployer's side). Dir is file's folder as
// the deployer saw it; nothing on this host is read from it. The App's Env
// method refuses to resolve such a configuration; Settings is "" and the
// sticky key nil. Problems lists every problem at once.
func ParseSent(file string, text []byte) (*App, error) {
	if file == "" {
		file = AppFileName
	}
	a := &App{}
	d := decode(file, text, a)
	if len(d.probs) > 0 && !d.has("app") && len(d.pos) <= 1 {
		return nil, d.sorted()
	}
	a.file, a.File, a.text, a.sent = file, file, string(text), true
	if filepath.IsAbs(file) {
		a.Dir = filepath.Dir(file)
	}
	return a.finish(d)
}

// finish applies the defaults and validates a decoded App.
func (a *App) finish(d *document) (*App, error) {
	a.applyDefaults(d)
	extra := a.validate(d)
	a.checkDeploy(d)
	a.checkAutoscale(d)
	if len(d.probs) > 0 || len(extra) > 0 {
		return nil, append(d.sorted(), extra...)
	}
	return a, nil
}

// Text returns the text the App was parsed from: shoal.yaml as it was read
// (Load, Parse) or sent (ParseSent). Releases keep it, so that a later
// config-only release or rollback is made from what was deployed rather
// than from the file as it is now.
func (a *App) Text() string { return a.text }

// Sent reports whether a was parsed by ParseSent: its file references
// name files on the deployer's machine, never read here.
func (a *App) Sent() bool { return a.sent }

// path resolves p, relative to the app folder.
func (a *App) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(a.Dir, p)
}
