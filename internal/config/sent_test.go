package config

import (
	"strings"
	"testing"
)

// TestParseSentReadsNoFile: a shoal.yaml sent from another machine is
// validated as Parse validates it, except that the files it names (which
// are on the deployer's machine) are neither read nor required here; its
// text is kept; its environment is not resolved again.
func TestParseSentReadsNoFile(t *testing.T) {
	text := `app: web
build:
  output: dist
run:
  command: node main.js
  secrets_file: .secrets
  settings: settings.json
balancer:
  sticky:
    cookie: srv
    secret_file: sticky.key
deploy:
  hooks:
    pre_deploy: ["./migrate"]
`
	a, err := ParseSent("/home/ann/web/shoal.yaml", []byte(text))
	if err != nil {
		t.Fatalf("ParseSent: %v", err)
	}
	if a.Text() != text || !a.Sent() || a.File != "/home/ann/web/shoal.yaml" || a.Dir != "/home/ann/web" {
		t.Errorf("sent app: text %q sent %v file %q dir %q", a.Text(), a.Sent(), a.File, a.Dir)
	}
	if a.Run.SecretsFile != "/home/ann/web/.secrets" || a.Build.Output != "/home/ann/web/dist" {
		t.Errorf("file references %q %q, want them as the deployer named them", a.Run.SecretsFile, a.Build.Output)
	}
	if a.Settings() != "" || a.Balancer.Sticky.Secret() != nil {
		t.Error("a sent configuration read the settings or the sticky key")
	}
	if _, err := a.Env(func(string) (string, bool) { return "", false }); err == nil {
		t.Error("Env of a sent configuration resolved it again")
	}
	if _, err := a.BuildSpec(nil); err == nil {
		t.Error("BuildSpec of a sent configuration did not refuse")
	}
	if a.Deploy.Hooks.PreDeploy[0] != "./migrate" || a.Balancer.Listen != DefaultBalancerListen {
		t.Errorf("sent app lacks its settings or defaults: %+v", a)
	}

	// Everything else is still checked, every problem with file:line:col.
	_, err = ParseSent("/home/ann/web/shoal.yaml", []byte("app: Web\nrun:\n  command: x\n  settings: s.json\n  env:\n    METEOR_SETTINGS: x\nbogus: 1\n"))
	for _, want := range []string{"/home/ann/web/shoal.yaml:1:6", "/home/ann/web/shoal.yaml:7:1", "METEOR_SETTINGS is also set"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSent of a bad file: %v, want %q", err, want)
		}
	}
	if _, err := ParseSent("", []byte("app: web\nrun:\n  command: x\n")); err != nil {
		t.Errorf("ParseSent without a file name: %v", err)
	}
}
