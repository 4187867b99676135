package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/internal/config"
)

// mupSecretName matches env names whose values are secrets.
var mupSecretName = regexp.MustCompile(`(?i)(SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH)`)

// mupLooksSecret reports whether an env value of mup.js goes to the
// secrets file: MAIL_URL (it carries the SMTP password), a name such as
// *SECRET*, *TOKEN* or *PASSWORD*, or a URL with a password in it (a
// MONGO_URL of mongodb://user:pass@host).
func mupLooksSecret(name, value string) bool {
	if name == "MAIL_URL" || mupSecretName.MatchString(name) {
		return true
	}
	if u, err := url.Parse(value); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
	}
	return false
}

// mupTopKeys are mup.js's top-level keys with a reason for those that
// are not mapped; the mapped ones have "".
var mupTopKeys = map[string]string{
	"servers": "", "app": "", "meteor": "", "proxy": "", "mongo": "",
	"hooks":                 "mup's hooks run commands around mup's own commands; Shoal's deploy.hooks (pre_deploy, post_deploy) run around a deploy where the release runs: move what still applies by hand",
	"plugins":               "mup plugins extend mup's commands; Shoal has no plugins",
	"privateDockerRegistry": "no registry is needed: the release artifact (the saved image with --docker) is shipped to the hosts by Shoal",
	"swarm":                 "Shoal's fleet (shoal server and an agent per host) replaces Docker Swarm: see the setup lines in shoal.yaml",
	"redis":                 "Shoal does not run databases: run Redis yourself and set its URL in secrets.env",
}

// translate maps the evaluated mup.js to a guess (the shoal.yaml and the
// files beside it) and the report.
func (im *mupImport) translate(cfg map[string]any, dropped []mupDropped) (*mupResult, error) {
	rep := &mupReport{}
	for _, d := range dropped {
		rep.skip(d.Path, "is %s, which is not data: only what JSON can hold is read", d.Kind)
	}
	appKey := "app"
	appV, hasApp := cfg["app"]
	if old, ok := cfg["meteor"]; ok {
		if hasApp {
			return nil, im.errorf("meteor", "both app and its former name meteor are set; keep app")
		}
		appKey, appV = "meteor", old
		rep.mapTo("meteor", "read as app (its former name in mup)")
	}
	if appV == nil {
		return nil, im.errorf("app", "missing: mup.js must have an app section (the Meteor app to deploy)")
	}
	app, err := im.obj(appV, appKey)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(cfg) {
		if why, ok := mupTopKeys[k]; !ok {
			rep.skip(k, "not a key mup documents; nothing in Shoal reads it")
		} else if why != "" {
			rep.skip(k, "%s", why)
		}
	}

	// app.type, app.name, app.path
	if t, ok := app["type"]; ok {
		if s, _ := str(t); s != "meteor" {
			return nil, im.errorf(appKey+".type", "%q: shoal import mup imports Meteor apps (type meteor); for another app, run shoal init in its folder", s)
		}
		rep.mapTo(appKey+".type", "meteor")
	}
	name, _ := str(app["name"])
	if name == "" {
		return nil, im.errorf(appKey+".name", "missing or not a string: the app's name is required")
	}
	p, _ := str(app["path"])
	if p == "" {
		return nil, im.errorf(appKey+".path", "missing or not a string: the path of the Meteor app, relative to mup.js")
	}
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[2:])
		}
	}
	appDir := p
	if !filepath.IsAbs(appDir) {
		appDir = filepath.Join(filepath.Dir(im.config), p)
	}
	appDir = filepath.Clean(appDir)
	if !exists(filepath.Join(appDir, ".meteor", "release")) {
		return nil, im.errorf(appKey+".path", "%q (%s) is not a Meteor app folder: it has no .meteor/release", p, appDir)
	}
	rep.mapTo(appKey+".path", "%s: shoal.yaml is written there, and the build runs there", appDir)

	g := &guess{name: appNameFor(name), literal: map[string]string{}, envNotes: map[string]string{}}
	if g.name != name {
		rep.mapTo(appKey+".name", "app: %s (%q made a valid Shoal name: lowercase letters, digits and dashes)", g.name, name)
	} else {
		rep.mapTo(appKey+".name", "app: %s", g.name)
	}
	g.meteor(appDir, im.docker)
	g.files = nil // the Dockerfile is written from app.docker below
	g.warnings = nil
	g.author = "shoal import mup"
	g.why = "from " + im.config
	g.header = []string{"See " + mupReportFile + " for what was mapped from mup.js and what was not."}
	g.exclude = []string{mupReportFile}

	handled := map[string]bool{"type": true, "name": true, "path": true}
	secrets := map[string]string{}

	// app.buildOptions
	build := meteorBuild{docker: im.docker}
	handled["buildOptions"] = true
	if err := im.buildOptions(app, appKey, &build, rep); err != nil {
		return nil, err
	}
	g.build, g.output = build.command(), build.output()

	// app.docker
	handled["docker"] = true
	if err := im.dockerSection(app, appKey, appDir, g, secrets, rep); err != nil {
		return nil, err
	}

	// servers, app.servers
	handled["servers"] = true
	if err := im.servers(cfg, app, appKey, g, rep); err != nil {
		return nil, err
	}

	// mongo, before env: a mup-managed MongoDB overrides MONGO_URL.
	mongo, hasMongo := cfg["mongo"]
	if hasMongo {
		rep.skip("mongo", "Shoal does not run databases; mup ran MongoDB %s in a container beside the app. Run MongoDB yourself (a managed service, or mongod on a host of its own with backups) and give the app its URL: MONGO_URL is taken from shoal's environment (run.env_from_host), or put it in %s", mongoVersion(mongo), mupSecretsFile)
		rep.todo = append(rep.todo, "MONGO_URL: set it in the environment of shoal up / shoal deploy (or in "+mupSecretsFile+" and remove it from env_from_host): mup's built-in MongoDB is not carried over")
	}

	// app.env
	handled["env"] = true
	envV, err := im.obj(app["env"], appKey+".env")
	if err != nil {
		return nil, err
	}
	g.hostEnv = nil
	for _, k := range sortedKeys(envV) {
		path := jsPath(appKey+".env", k)
		v, ok := str(envV[k])
		if !ok {
			rep.skip(path, "is %s; env values are strings", jsKind(envV[k]))
			continue
		}
		switch {
		case k == "ROOT_URL":
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, im.errorf(path, "%q is not an http:// or https:// URL", v)
			}
			g.rootURL = v
			rep.mapTo(path, "run.root_url (Shoal sets ROOT_URL from it)")
		case k == "PORT":
			rep.skip(path, "Shoal sets PORT for each instance (the app listens where the balancer sends); the public port is balancer.listen (shoal up) or server.yaml's balancer listen (a fleet)")
		case k == "MONGO_URL" && hasMongo:
			rep.skip(path, "mup replaces it with its built-in MongoDB's URL, which does not exist under Shoal: see mongo")
		case k == "HTTP_FORWARDED_COUNT":
			g.literal[k] = v
			g.envNotes[k] = "from mup.js. The number of " + meteorForwardedNote
			rep.mapTo(path, "run.env.%s, kept (with mup's proxy it counted nginx, whose place the balancer takes); above 1 it is right only for proxies the balancer trusts (lb.yaml's trusted_proxies), else set it to 1", k)
		case k == "METEOR_SETTINGS":
			rep.skip(path, "settings come from the settings file (run.settings), which becomes METEOR_SETTINGS; the value is not copied")
		case config.EnvNameProblem(k) != "":
			rep.skip(path, "%s", config.EnvNameProblem(k))
		case mupLooksSecret(k, v):
			secrets[k] = v
			rep.mapTo(path, "%s (a secret: mode 0600, never printed)", mupSecretsFile)
		default:
			g.literal[k] = v
			rep.mapTo(path, "run.env.%s", k)
		}
	}
	if hasMongo {
		delete(secrets, "MONGO_URL")
		delete(g.literal, "MONGO_URL")
		g.hostEnv = []string{"MONGO_URL"}
	}
	if _, ok := envV["MONGO_URL"]; !ok && !hasMongo {
		g.hostEnv = []string{"MONGO_URL"}
		rep.todo = append(rep.todo, "MONGO_URL: mup.js sets none; it is taken from the environment of shoal up / shoal deploy (run.env_from_host)")
	}

	// settings
	if err := im.settingsFile(appDir, g, rep); err != nil {
		return nil, err
	}

	// deployCheckWaitTime, deployCheckPort, enableUploadProgressBar
	if v, ok := app["deployCheckWaitTime"]; ok {
		handled["deployCheckWaitTime"] = true
		s, _ := str(v)
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, im.errorf(appKey+".deployCheckWaitTime", "%s is not a whole number of seconds", s)
		}
		g.grace = fmt.Sprintf("%ds", n)
		g.graceNote = "mup's deployCheckWaitTime: how long a new instance may take to answer; a rollout fails after the larger of 5m and twice this (deploy.batch_timeout)"
		rep.mapTo(appKey+".deployCheckWaitTime", "health.grace: %ds (a new instance's failed checks do not count for that long; the rollout's batch_timeout follows it)", n)
	}
	for k, why := range map[string]string{
		"deployCheckPort":         "Shoal checks each instance directly on the port it chose for it (health.path), not through a proxy",
		"enableUploadProgressBar": "Shoal prints its own progress when it builds and uploads; there is nothing to turn on",
		"volumes":                 "Shoal does not mount host folders into instances: keep files in a database or object storage, since instances move between hosts",
		"log":                     "Shoal keeps each instance's output itself (shoal logs); there is no log driver to set",
		"ssl":                     "app.ssl is mup's deprecated SSL setup: TLS ends at the balancer's listener (lb.yaml's tls listeners; ACME is being built)",
		"nginx":                   "app.nginx is mup's deprecated nginx setup; the balancer replaces nginx (request size limits: lb.yaml's limits.max_body_bytes)",
	} {
		if _, ok := app[k]; ok {
			handled[k] = true
			rep.skip(jsPath(appKey, k), "%s", why)
		}
	}
	for _, k := range sortedKeys(app) {
		if !handled[k] {
			rep.skip(jsPath(appKey, k), "not a key mup documents for the app; nothing in Shoal reads it")
		}
	}

	// proxy
	if err := im.proxy(cfg, g, rep); err != nil {
		return nil, err
	}

	if g.rootURL == "" {
		rep.todo = append(rep.todo, "run.root_url: mup.js sets no ROOT_URL; set the app's public URL before serving other machines")
	}
	if len(secrets) > 0 {
		g.secrets = mupSecretsFile
		g.files = append(g.files, genFile{name: mupSecretsFile, text: secretsText(secrets, im.config), mode: 0o600})
		rep.todo = append(rep.todo, "keep "+mupSecretsFile+" out of version control (add it to .gitignore)")
	} else {
		g.secrets = ""
	}
	sort.Slice(rep.unmapped, func(i, j int) bool { return rep.unmapped[i].path < rep.unmapped[j].path })
	return &mupResult{appDir: appDir, g: g, report: rep}, nil
}

func mongoVersion(v any) string {
	if m, ok := v.(map[string]any); ok {
		if s, ok := str(m["version"]); ok && s != "" {
			return s
		}
	}
	return "(default version)"
}

// secretsText writes a secrets file: KEY="value" lines, the values
// quoted with the escapes the loader reads.
func secretsText(secrets map[string]string, src string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Secrets of the app, from %s (shoal import mup).\n", src)
	b.WriteString("# KEY=VALUE lines; Shoal passes them to the app and never prints them.\n")
	b.WriteString("# Keep this file out of version control.\n")
	for _, k := range sortedKeys(anyMap(secrets)) {
		v := secrets[k]
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`, "\r", `\r`)
		fmt.Fprintf(&b, "%s=\"%s\"\n", k, r.Replace(v))
	}
	return b.String()
}

func anyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// buildOptions maps app.buildOptions onto the meteor build command.
func (im *mupImport) buildOptions(app map[string]any, appKey string, b *meteorBuild, rep *mupReport) error {
	path := appKey + ".buildOptions"
	bo, err := im.obj(app["buildOptions"], path)
	if err != nil {
		return err
	}
	for _, k := range sortedKeys(bo) {
		kp := jsPath(path, k)
		v := bo[k]
		switch k {
		case "serverOnly":
			if truthy(v) {
				rep.mapTo(kp, "the build is meteor build --server-only")
			} else {
				rep.skip(kp, "false: Shoal builds the server only (--server-only); mobile (Cordova) apps are not built or served by it")
			}
		case "debug":
			b.debug = truthy(v)
			rep.mapTo(kp, "meteor build --debug: %v", b.debug)
		case "allowIncompatibleUpdates":
			b.allowIncompatible = truthy(v)
			rep.mapTo(kp, "meteor build --allow-incompatible-updates: %v", b.allowIncompatible)
		case "executable":
			s, _ := str(v)
			if s == "" || strings.ContainsAny(s, " \t\n'\"$`;&|<>") {
				rep.skip(kp, "not a plain command name or path; the build uses meteor")
				continue
			}
			b.executable = s
			rep.mapTo(kp, "the build runs %s", s)
		case "buildLocation":
			rep.skip(kp, "the build goes to %s in the app folder (build.output), replaced at each build", meteorBuildDir)
		case "cleanAfterBuild":
			rep.skip(kp, "the build folder is replaced at each build and kept between them for the release artifact")
		case "mobileSettings", "server":
			rep.skip(kp, "for mobile (Cordova) builds, which Shoal does not make")
		default:
			rep.skip(kp, "not a build option mup documents; not passed to meteor build")
		}
	}
	return nil
}

// dockerSection maps app.docker: with --docker, the image, the port, the build
// instructions and the resource flags of args; without it, a report line
// for each key saying the app runs as processes.
func (im *mupImport) dockerSection(app map[string]any, appKey, appDir string, g *guess, secrets map[string]string, rep *mupReport) error {
	path := appKey + ".docker"
	d, err := im.obj(app["docker"], path)
	if err != nil {
		return err
	}
	if !im.docker {
		for _, k := range sortedKeys(d) {
			rep.skip(jsPath(path, k), "the app runs as processes (node main.js of the bundle) on each host, which shoal up and the fleet's agents both run; shoal import mup --docker maps app.docker to runtime: docker (shoal up only for now)")
		}
		return nil
	}
	image, sure := meteorNodeImage(appDir)
	if s, _ := str(d["image"]); s != "" {
		image = s
		rep.mapTo(path+".image", "FROM %s in %s: it must have node and npm on its PATH (mup's images that install node when the container starts, such as zodern/meteor, do not: use node:<version> then)", image, meteorDockerfileName)
	} else {
		msg := "guess from .meteor/release"
		if !sure {
			msg = "a guess: set the Node.js version of your Meteor release (meteor node --version)"
		}
		rep.todo = append(rep.todo, fmt.Sprintf("%s: FROM %s (%s)", meteorDockerfileName, image, msg))
	}
	var instructions []string
	g.port = 3000
	for _, k := range sortedKeys(d) {
		kp := jsPath(path, k)
		v := d[k]
		switch k {
		case "image":
		case "imagePort":
			s, _ := str(v)
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 65535 {
				return im.errorf(kp, "%q is not a port", s)
			}
			g.port = n
			rep.mapTo(kp, "run.port: %d", n)
		case "buildInstructions":
			list, ok := v.([]any)
			if !ok {
				return im.errorf(kp, "must be an array of Dockerfile lines, is %s", jsKind(v))
			}
			for i, e := range list {
				s, ok := e.(string)
				if !ok || strings.ContainsAny(s, "\n\r") {
					return im.errorf(fmt.Sprintf("%s[%d]", kp, i), "must be one Dockerfile line (a string)")
				}
				instructions = append(instructions, s)
			}
			rep.mapTo(kp, "%d line(s) of %s, before the bundle is copied in", len(instructions), meteorDockerfileName)
		case "args":
			list, ok := v.([]any)
			if !ok {
				return im.errorf(kp, "must be an array of docker run arguments, is %s", jsKind(v))
			}
			if err := im.dockerArgs(list, kp, g, secrets, rep); err != nil {
				return err
			}
		case "prepareBundle", "useBuildKit", "stopAppDuringPrepareBundle":
			rep.skip(kp, "Shoal builds the image once, where shoal runs, and ships it to the hosts: nothing is built on the servers")
		case "bind":
			rep.skip(kp, "Shoal publishes each container's port on 127.0.0.1 (shoal up) or the host's advertised address (a fleet), at a port it chooses")
		case "networks":
			rep.skip(kp, "Shoal does not connect containers to Docker networks; reach other services by address (in env)")
		default:
			rep.skip(kp, "not a docker option mup documents")
		}
	}
	why := "Written by shoal import mup from " + im.config + " (app.docker)."
	g.files = append(g.files, genFile{name: meteorDockerfileName, text: meteorDockerfile(image, why, instructions), mode: 0o644})
	return nil
}

// dockerArgReasons explains the docker run flags that do not map.
var dockerArgReasons = map[string]string{
	"--link":               "Shoal does not link containers; reach other services by address (in env)",
	"--network":            "Shoal chooses the container's network (a published port)",
	"--net":                "Shoal chooses the container's network (a published port)",
	"-v":                   "Shoal does not mount host folders into instances, which move between hosts",
	"--volume":             "Shoal does not mount host folders into instances, which move between hosts",
	"--mount":              "Shoal does not mount host folders into instances, which move between hosts",
	"-p":                   "Shoal publishes the port itself (run.port)",
	"--publish":            "Shoal publishes the port itself (run.port)",
	"--restart":            "Shoal supervises the instances: containers get no restart policy",
	"--memory-reservation": "run.memory is a limit and what placement reserves; there is no soft reservation",
	"--log-driver":         "Shoal reads each container's output itself (shoal logs)",
	"--log-opt":            "Shoal reads each container's output itself (shoal logs)",
	"--name":               "Shoal names the containers after the app, release and instance",
}

// dockerArgs maps mup's docker run arguments: --memory/-m to run.memory,
// --cpus to run.cpu, -e/--env to env; every other flag to the report
// (its name only: a value may be a secret).
func (im *mupImport) dockerArgs(list []any, path string, g *guess, secrets map[string]string, rep *mupReport) error {
	var words []string
	var from []int // index in list of each word
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return im.errorf(fmt.Sprintf("%s[%d]", path, i), "must be a string, is %s", jsKind(e))
		}
		for _, w := range strings.Fields(s) {
			words = append(words, w)
			from = append(from, i)
		}
	}
	for i := 0; i < len(words); i++ {
		at := fmt.Sprintf("%s[%d]", path, from[i])
		flag, val, hasVal := strings.Cut(words[i], "=")
		if !strings.HasPrefix(flag, "-") {
			rep.skip(at, "a word that is not a flag; not mapped")
			continue
		}
		takesValue := flag != "--rm" && flag != "-d" && flag != "--detach" && flag != "--init" && flag != "--privileged" && flag != "-t" && flag != "-i"
		if !hasVal && takesValue && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
			i++
			val, hasVal = words[i], true
		}
		switch flag {
		case "-m", "--memory":
			size, err := dockerSize(val)
			if err != nil {
				return im.errorf(at, "%s %q: %v", flag, val, err)
			}
			g.memory = size
			rep.mapTo(at, "run.memory: %s (the container's limit, and what placement reserves in a fleet)", size)
		case "--cpus":
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f <= 0 {
				return im.errorf(at, "--cpus %q is not a number of cores", val)
			}
			g.cpu = f
			rep.mapTo(at, "run.cpu: %s", val)
		case "-e", "--env":
			k, v, ok := strings.Cut(val, "=")
			switch {
			case !ok || config.EnvNameProblem(k) != "":
				rep.skip(at, "%s without a NAME=value Shoal accepts (%s)", flag, config.EnvNameProblem(k))
			case mupLooksSecret(k, v):
				secrets[k] = v
				rep.mapTo(at, "%s %s: %s (a secret)", flag, k, mupSecretsFile)
			default:
				g.literal[k] = v
				rep.mapTo(at, "%s %s: run.env.%s", flag, k, k)
			}
		default:
			why, ok := dockerArgReasons[flag]
			if !ok {
				why = "no equivalent in shoal.yaml"
			}
			rep.skip(at, "docker run %s: %s", flag, why)
		}
	}
	return nil
}

var dockerSizeRe = regexp.MustCompile(`^(\d+)([bkmgBKMG]?)$`)

// dockerSize turns docker's memory sizes (512m, 1g: binary units) into a
// size shoal.yaml reads.
func dockerSize(s string) (string, error) {
	m := dockerSizeRe.FindStringSubmatch(s)
	if m == nil {
		return "", fmt.Errorf("not a docker memory size (such as 512m or 1g)")
	}
	unit := map[string]string{"": "", "b": "", "k": "KiB", "m": "MiB", "g": "GiB"}[strings.ToLower(m[2])]
	return m[1] + unit, nil
}

// settingsFile maps the settings file to run.settings.
func (im *mupImport) settingsFile(appDir string, g *guess, rep *mupReport) error {
	g.settings = ""
	file := im.settings
	explicit := file != ""
	if !explicit {
		file = filepath.Join(filepath.Dir(im.config), "settings.json")
	} else if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) && !explicit {
		rep.todo = append(rep.todo, "no settings.json beside mup.js: METEOR_SETTINGS is not set (give one with --settings, or set run.settings)")
		return nil
	}
	if err != nil {
		return usagef("%s: the settings file (--settings): %v", im.config, err)
	}
	if !json.Valid(data) {
		return usagef("%s: the settings file is not valid JSON (METEOR_SETTINGS must be)", file)
	}
	rel, err := filepath.Rel(appDir, file)
	if err != nil {
		rel = file
	}
	g.settings = filepath.ToSlash(rel)
	rep.mapTo("(settings)", "run.settings: %s, passed as METEOR_SETTINGS (read when shoal.yaml is loaded, never shipped in the release)", g.settings)
	return nil
}

// servers maps servers and app.servers to the fleet's hosts: one `shoal
// setup` line each, at the end of shoal.yaml.
func (im *mupImport) servers(cfg, app map[string]any, appKey string, g *guess, rep *mupReport) error {
	servers, err := im.obj(cfg["servers"], "servers")
	if err != nil {
		return err
	}
	appServers, err := im.obj(app["servers"], appKey+".servers")
	if err != nil {
		return err
	}
	if len(appServers) == 0 {
		// mup needs app.servers; without it, every server runs the app.
		for k := range servers {
			appServers[k] = map[string]any{}
		}
	}
	var lines []string
	for _, name := range sortedKeys(appServers) {
		sp := jsPath(appKey+".servers", name)
		sv, ok := servers[name]
		if !ok {
			return im.errorf(sp, "names no server of servers")
		}
		if over, err := im.obj(appServers[name], sp); err != nil {
			return err
		} else {
			for _, k := range sortedKeys(over) {
				if k == "env" {
					env, _ := over["env"].(map[string]any)
					for _, e := range sortedKeys(env) {
						rep.skip(jsPath(jsPath(sp, "env"), e), "Shoal gives every instance of an app the same environment, on whichever host it runs; per-server values are not carried over")
					}
					continue
				}
				rep.skip(jsPath(sp, k), "not an option of an app's server that Shoal has")
			}
		}
		p := jsPath("servers", name)
		s, err := im.obj(sv, p)
		if err != nil {
			return err
		}
		host, _ := str(s["host"])
		if host == "" {
			return im.errorf(p+".host", "missing: the server's address")
		}
		user, _ := str(s["username"])
		if user == "" {
			user = "root"
			rep.skip(p+".username", "not set: the setup line uses root")
		}
		target := "ssh://" + user + "@" + host
		opts, _ := s["opts"].(map[string]any)
		if port, ok := str(opts["port"]); ok && port != "" && port != "22" {
			target += ":" + port
		}
		advertise := host
		if ip, _ := str(s["privateIp"]); ip != "" {
			advertise = ip
		}
		args := []string{"shoal setup", target, "--server https://SERVER:7443", "--advertise " + advertise}
		node := strings.ToLower(name)
		if config.ValidNodeName(node) {
			args = append(args, "--name "+node)
		} else {
			rep.skip(p, "%q is not a valid host name in the fleet; the setup line leaves --name out (the host's own name is used)", name)
			node = "host"
		}
		args = append(args, "--token-file "+node+".token")
		if pem, _ := str(s["pem"]); pem != "" {
			args = append(args, "-i "+pem)
			rep.mapTo(p+".pem", "shoal setup -i (the key file is named, not copied)")
		}
		if _, ok := s["password"]; ok {
			rep.skip(p+".password", "shoal setup logs in with keys only (the SSH agent or -i); the password is not written anywhere: install a key on the host")
		}
		for _, k := range sortedKeys(s) {
			switch k {
			case "host", "username", "pem", "password", "privateIp":
			case "opts":
				for _, o := range sortedKeys(opts) {
					if o != "port" {
						rep.skip(jsPath(p+".opts", o), "SSH option not used by shoal setup")
					}
				}
			default:
				rep.skip(jsPath(p, k), "not a server option mup documents")
			}
		}
		lines = append(lines, "  "+strings.Join(args, " "))
		rep.mapTo(p, "fleet host %s: %s", node, strings.TrimSpace(lines[len(lines)-1]))
	}
	for _, name := range sortedKeys(servers) {
		if _, ok := appServers[name]; !ok {
			rep.skip(jsPath("servers", name), "does not run the app (not in %s.servers): no setup line", appKey)
		}
	}
	if len(lines) > 0 {
		g.tail = append([]string{
			"Fleet hosts, from mup.js's servers. shoal up runs the app on this machine;",
			"to run it on these hosts, start shoal server on one machine (SERVER below:",
			"its address; fleet.listen is :7443 by default), make a join token for each",
			"host (shoal join-token > NAME.token) and install its agent. mup has no zones:",
			"add --zone ZONE to each line to spread instances over failure domains.",
		}, lines...)
		g.tail = append(g.tail, "", "Then deploy from this folder: SHOAL_ADMIN_URL=https://SERVER:7440 SHOAL_TOKEN=... SHOAL_CA_PIN=... shoal deploy")
		rep.todo = append(rep.todo, "the fleet: run the shoal setup lines at the end of shoal.yaml (with SERVER and zones filled in)")
	}
	return nil
}

// proxy maps mup's reverse proxy: its domains to balancer.hosts (and
// ROOT_URL when mup.js sets none), sticky sessions to the sticky cookie;
// TLS to the report.
func (im *mupImport) proxy(cfg map[string]any, g *guess, rep *mupReport) error {
	px, err := im.obj(cfg["proxy"], "proxy")
	if err != nil {
		return err
	}
	https := false
	for _, k := range sortedKeys(px) {
		kp := jsPath("proxy", k)
		v := px[k]
		switch k {
		case "domains":
			s, _ := str(v)
			for _, d := range strings.Split(s, ",") {
				if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
					g.hosts = append(g.hosts, d)
				}
			}
			rep.mapTo(kp, "balancer.hosts: %s (the host names shoal server routes to the app)", strings.Join(g.hosts, ", "))
		case "ssl":
			ssl, err := im.obj(v, kp)
			if err != nil {
				return err
			}
			https = true
			for _, sk := range sortedKeys(ssl) {
				sp := jsPath(kp, sk)
				switch sk {
				case "letsEncryptEmail":
					rep.skip(sp, "Let's Encrypt certificates will be the balancer's acme setting once it lands (being built); until then, put a certificate on an lb.yaml tls listener")
				case "crt", "key":
					rep.skip(sp, "TLS ends at the balancer's listener: name the certificate and key in lb.yaml (tls listeners); shoal.yaml holds no certificates")
				case "forceSSL":
					rep.skip(sp, "redirecting http to https is the balancer's listener's job (lb.yaml), not the app's configuration")
				default:
					rep.skip(sp, "not an SSL option mup documents")
				}
			}
		case "loadBalancing":
			rep.mapTo(kp, "Shoal always balances over every instance; nothing to set")
		case "stickySessions":
			if truthy(v) {
				g.sticky = true
				rep.mapTo(kp, "balancer.sticky.cookie: shoal_sticky")
			} else {
				rep.mapTo(kp, "false: no sticky cookie (SockJS sessions still stay on one instance)")
			}
		case "clientUploadLimit":
			rep.skip(kp, "the balancer's request size limit is lb.yaml's limits.max_body_bytes (none by default)")
		case "servers":
			rep.skip(kp, "the balancer runs with shoal server (or shoal lb nodes), not on the app's hosts")
		case "nginxServerConfig", "nginxLocationConfig":
			rep.skip(kp, "nginx configuration: Shoal's balancer is not nginx; move what applies by hand")
		case "shared":
			rep.skip(kp, "the balancer's listeners are server.yaml's or lb.yaml's, shared by every app (httpPort/httpsPort are their ports)")
		default:
			rep.skip(kp, "not a proxy option mup documents")
		}
	}
	if _, ok := px["loadBalancing"]; ok && truthy(px["loadBalancing"]) {
		if _, set := px["stickySessions"]; !set {
			g.sticky = true // mup's default with loadBalancing
			rep.mapTo("proxy.stickySessions", "not set, mup's default true with loadBalancing: balancer.sticky.cookie")
		}
	}
	if g.rootURL == "" && len(g.hosts) > 0 && !strings.HasPrefix(g.hosts[0], "*") {
		scheme := "http"
		if https {
			scheme = "https"
		}
		g.rootURL = scheme + "://" + g.hosts[0]
		rep.mapTo("proxy.domains", "run.root_url: %s (mup.js sets no ROOT_URL; the first domain)", g.rootURL)
	}
	return nil
}
