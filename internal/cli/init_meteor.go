package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/internal/config"
)

// meteorBuildDir is where the Meteor build of `shoal init` and `shoal
// import mup` goes: under .meteor/local, which Meteor's own .gitignore
// already leaves out of version control.
const meteorBuildDir = ".meteor/local/shoal-build"

// meteorDockerfileName is the Dockerfile that init --docker and import
// mup --docker write in the app folder; the build copies it into the
// build context (build.output), where the engine reads it.
const meteorDockerfileName = "Dockerfile.shoal"

// meteorBuild is the build of a Meteor app: `meteor build --directory`,
// then, for processes, the server's npm dependencies installed once at
// build time (never on each instance); for containers, the Dockerfile
// copied beside the bundle, whose npm install runs inside the image so
// that native modules match its system.
type meteorBuild struct {
	executable        string // the meteor command; default "meteor"
	debug             bool   // --debug
	allowIncompatible bool   // --allow-incompatible-updates
	docker            bool
}

// command is build.command.
func (m meteorBuild) command() string {
	exe := m.executable
	if exe == "" {
		exe = "meteor"
	}
	build := exe + " build " + meteorBuildDir + " --directory --server-only"
	if m.debug {
		build += " --debug"
	}
	if m.allowIncompatible {
		build += " --allow-incompatible-updates"
	}
	steps := []string{"rm -rf " + meteorBuildDir, exe + " npm install", build}
	if m.docker {
		steps = append(steps, "cp "+meteorDockerfileName+" "+meteorBuildDir+"/Dockerfile")
	} else {
		steps = append(steps, "cd "+meteorBuildDir+"/bundle/programs/server && "+exe+" npm install --omit=dev")
	}
	return strings.Join(steps, " && ")
}

// output is build.output.
func (m meteorBuild) output() string {
	if m.docker {
		return meteorBuildDir // the bundle and the Dockerfile: the build context
	}
	return meteorBuildDir + "/bundle"
}

// meteorNodeImage guesses a base image with the Node.js that the Meteor
// release in .meteor/release runs on (Meteor 3.0: Node 20; 3.1 and later:
// Node 22; 2.x: Node 14), and says whether it is only a guess.
func meteorNodeImage(dir string) (image string, sure bool) {
	b, err := os.ReadFile(filepath.Join(dir, ".meteor", "release"))
	rel := strings.TrimSpace(string(b))
	_, ver, ok := strings.Cut(rel, "@")
	if err != nil || !ok {
		return "node:22-bookworm-slim", false
	}
	parts := strings.SplitN(ver, ".", 3)
	major, err1 := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	switch {
	case err1 != nil:
		return "node:22-bookworm-slim", false
	case major == 3 && minor == 0:
		return "node:20-bookworm-slim", true
	case major >= 3:
		return "node:22-bookworm-slim", true
	case major == 2:
		return "node:14-bullseye-slim", true
	}
	return "node:22-bookworm-slim", false
}

// meteorDockerfile returns the text of the Dockerfile that runs a Meteor
// bundle: FROM image, the extra instructions (mup's
// docker.buildInstructions), the bundle, its npm dependencies installed
// inside the image, and `node main.js`. The image must have node and npm
// on its PATH. why says where the file comes from.
func meteorDockerfile(image, why string, instructions []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", why)
	b.WriteString("# The build context is " + meteorBuildDir + " (build.output): the bundle that\n")
	b.WriteString("# `meteor build --directory` wrote, and this file, copied there by build.command.\n")
	b.WriteString("# The base image must have node and npm on its PATH, in the version your Meteor\n")
	b.WriteString("# release runs on (meteor node --version).\n")
	fmt.Fprintf(&b, "FROM %s\n", image)
	for _, in := range instructions {
		b.WriteString(in + "\n")
	}
	b.WriteString("COPY bundle /app\n")
	b.WriteString("WORKDIR /app/programs/server\n")
	b.WriteString("# Installed here rather than on the build machine, so that native modules\n")
	b.WriteString("# are built for the image's system.\n")
	b.WriteString("RUN npm install --omit=dev --no-audit --no-fund\n")
	b.WriteString("WORKDIR /app\n")
	b.WriteString("ENV NODE_ENV=production\n")
	b.WriteString(`CMD ["node", "main.js"]` + "\n")
	return b.String()
}

// meteorForwardedNote explains run.env.HTTP_FORWARDED_COUNT.
const meteorForwardedNote = "proxies in front of the app: Shoal's balancer, which replaces the X-Forwarded-For of a client it does not trust with the client's address; Meteor's clientAddress is taken that many entries from the end. Raise it only for proxies in front of the balancer that it trusts (lb.yaml's trusted_proxies), whose entries it keeps"

// meteor fills g for a Meteor app folder (.meteor/release): a build of
// `meteor build --directory` and a run of the bundle with `node main.js`,
// or, with docker, an image of the bundle (Dockerfile.shoal).
func (g *guess) meteor(dir string, docker bool) {
	g.kind, g.why = "meteor", "found .meteor/release: a Meteor app"
	m := meteorBuild{docker: docker}
	g.build, g.output = m.command(), m.output()
	g.hostEnv = []string{"MONGO_URL"}
	g.literal["NODE_ENV"] = "production"
	g.literal["HTTP_FORWARDED_COUNT"] = "1"
	g.envNotes["HTTP_FORWARDED_COUNT"] = "the number of " + meteorForwardedNote
	g.sockjs = true
	g.graceNote = "Meteor servers can take tens of seconds to boot"
	if docker {
		g.runtime = config.RuntimeDocker
		g.dockerfile = meteorBuildDir + "/Dockerfile"
		g.port = 3000
		g.notes = []string{"The image's CMD (node main.js) runs the bundle; listens on run.port, given to it as $PORT."}
		image, sure := meteorNodeImage(dir)
		why := "Written by shoal init for a Meteor app."
		if !sure {
			g.warnings = append(g.warnings, fmt.Sprintf("%s: FROM %s is a guess; use the Node.js version of your Meteor release (meteor node --version)", meteorDockerfileName, image))
		}
		g.files = append(g.files, genFile{name: meteorDockerfileName, text: meteorDockerfile(image, why, nil), mode: 0o644})
	} else {
		g.run = "node main.js"
		g.notes = []string{"Runs the Meteor bundle with a node that matches your Meteor release (see: meteor node --version). It listens on $PORT, which Shoal sets for each instance."}
	}
	if exists(filepath.Join(dir, "settings.json")) {
		g.settings = "settings.json"
	}
}
