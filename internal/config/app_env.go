package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/internal/api"
)

// RedactedValue replaces a secret value in every output.
const RedactedValue = api.RedactedValue

// minRedactLen is the shortest secret value that Env.Redact scrubs from
// free text. Shorter values would turn ordinary text into noise ("1" or
// "on" appear everywhere); they are still hidden by Env.Redacted.
const minRedactLen = 4

// EnvVar is one variable of an instance's environment.
type EnvVar struct {
	Name  string
	Value string
	// Secret marks values that must never be printed: those from
	// run.secrets_file, run.env_from_host and run.settings.
	Secret bool
}

// Env is the complete environment Shoal gives an instance, except PORT,
// which is chosen per instance. It is sorted by name and holds each name
// once. An Env is a plain value, safe to share when not modified.
type Env []EnvVar

// Env assembles the instance environment from the configuration: run.env
// (literal), run.env_from_host (looked up with lookup, normally
// os.LookupEnv, at the time of the call), the secrets file, METEOR_SETTINGS
// from run.settings and ROOT_URL from run.root_url. It does not include
// shoal's own environment otherwise. A variable of env_from_host that
// lookup does not find is an error (Problems pointing at the entry); the
// error never contains a value.
//
// A configuration parsed by ParseSent has no secrets or settings read on
// this host; Env refuses it, since its environment arrives resolved.
func (a *App) Env(lookup func(string) (string, bool)) (Env, error) {
	if a.sent {
		return nil, fmt.Errorf("%s: the environment of a sent configuration arrives resolved; it is not resolved again on this host", a.file)
	}
	var env Env
	for k, v := range a.Run.Env {
		env = append(env, EnvVar{Name: k, Value: v})
	}
	var probs Problems
	for i, k := range a.Run.EnvFromHost {
		v, ok := lookup(k)
		if !ok {
			var pos Pos
			if i < len(a.fromHostAt) {
				pos = a.fromHostAt[i]
			}
			probs = append(probs, Problem{
				File: a.file, Pos: pos, Path: fmt.Sprintf("run.env_from_host[%d]", i),
				Msg: fmt.Sprintf("%s is not set in shoal's environment", k),
			})
			continue
		}
		env = append(env, EnvVar{Name: k, Value: v, Secret: true})
	}
	if len(probs) > 0 {
		return nil, probs
	}
	for _, s := range a.secrets {
		env = append(env, EnvVar{Name: s.Name, Value: s.Value, Secret: true})
	}
	if a.Run.Settings != "" {
		env = append(env, EnvVar{Name: "METEOR_SETTINGS", Value: a.settings, Secret: true})
	}
	env = append(env, EnvVar{Name: "ROOT_URL", Value: a.Run.RootURL})
	sort.Slice(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	return env, nil
}

// Settings returns the contents of run.settings as compact JSON, or "" when
// there is none. It is secret.
func (a *App) Settings() string { return a.settings }

// Get returns the value of name.
func (e Env) Get(name string) (string, bool) {
	for _, v := range e {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// Environ returns the variables as NAME=value strings for exec.Cmd.Env. The
// result holds secret values: pass it to a process, never print it.
func (e Env) Environ() []string {
	out := make([]string, len(e))
	for i, v := range e {
		out[i] = v.Name + "=" + v.Value
	}
	return out
}

// Redacted returns the variables as NAME=value strings with every secret
// value replaced by RedactedValue: safe to print, log or send.
func (e Env) Redacted() []string {
	out := make([]string, len(e))
	for i, v := range e {
		val := v.Value
		if v.Secret {
			val = RedactedValue
		}
		out[i] = v.Name + "=" + val
	}
	return out
}

// Redact returns s with every occurrence of a secret value of e replaced by
// RedactedValue, for text that may echo the environment (an instance's
// failure output, an error from a child process). Values shorter than four
// characters are left alone, since scrubbing them would garble any text.
// Longer values are replaced first, so a secret containing another is
// hidden whole.
func (e Env) Redact(s string) string {
	for _, v := range e.SecretValues() {
		s = strings.ReplaceAll(s, v, RedactedValue)
	}
	return s
}

// SecretValues returns the secret values that Redact scrubs (those of at
// least four characters), longest first, each once: what a writer that
// redacts by itself, such as an instance's log, must hide. The result
// holds secrets: never print it.
func (e Env) SecretValues() []string {
	var secrets []string
	for _, v := range e {
		if v.Secret && len(v.Value) >= minRedactLen && !slices.Contains(secrets, v.Value) {
			secrets = append(secrets, v.Value)
		}
	}
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	return secrets
}

// Fingerprint is a stable digest ("sha256:<hex>") of what an instance runs
// with besides its artifact: run.command, run.cpu and run.memory, and the
// complete environment env (as returned by App.Env, settings included).
// Two releases with the same artifact and different fingerprints differ
// only in configuration, which needs a restart but no rebuild. It is
// one-way; it reveals no value. The CPU and memory enter only when
// declared, so the fingerprint of a configuration without them is the one
// releases made before they existed recorded.
func (a *App) Fingerprint(env Env) string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s\n", len(s), s) }
	field("shoal-run-v1")
	field(a.Run.Command)
	// "run.cpu" cannot be a variable name, so these fields cannot be
	// mistaken for an env pair.
	if a.Run.CPU != 0 {
		field("run.cpu")
		field(strconv.FormatFloat(a.Run.CPU, 'g', -1, 64))
	}
	if a.Run.Memory != 0 {
		field("run.memory")
		field(strconv.FormatInt(int64(a.Run.Memory), 10))
	}
	if a.Docker() {
		field("runtime")
		field(a.Runtime)
		field("run.port")
		field(strconv.Itoa(a.Run.Port))
	}
	sorted := slices.Clone(env)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, v := range sorted {
		field(v.Name)
		field(v.Value)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Exclude returns the absolute paths left out of the artifact and of the
// source fingerprint: build.exclude, data_dir, run.secrets_file,
// run.settings and balancer.sticky.secret_file (".git" is excluded by the
// packer itself). The secrets file and the settings reach instances only
// through their environment, never as files inside a release; the sticky
// key is the balancer's, never the app's.
func (a *App) Exclude() []string {
	var out []string
	if a.Build != nil {
		for _, p := range a.Build.Exclude {
			out = append(out, a.path(p))
		}
	}
	out = append(out, a.DataDir)
	for _, p := range []string{a.Run.SecretsFile, a.Run.Settings} {
		if p != "" {
			out = append(out, p)
		}
	}
	if s := a.Balancer.Sticky; s != nil && s.SecretFile != "" {
		out = append(out, s.SecretFile)
	}
	return out
}

// OutputDir returns the absolute directory that becomes the artifact: the
// build output, or the app folder when there is no build section.
func (a *App) OutputDir() string {
	if a.Build == nil {
		return a.Dir
	}
	return a.Build.Output
}

// defaultRootURL derives ROOT_URL from the balancer address.
func defaultRootURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://localhost"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	if port == "80" {
		return "http://" + appURLHost(host)
	}
	return "http://" + net.JoinHostPort(host, port)
}

func appURLHost(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}
