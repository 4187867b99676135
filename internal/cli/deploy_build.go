package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/shoal-dev/shoal/internal/client"
	"github.com/shoal-dev/shoal/internal/config"
	"github.com/shoal-dev/shoal/internal/release"
)

// prepareDeploy does the deployer's side of `shoal deploy`: it loads the
// configuration at file (problems are a usage error: exit 2, nothing
// sent), resolves its environment from this process's (env_from_host),
// and, unless configOnly, builds the artifact into <data_dir>/artifacts
// (the store `shoal up` uses, so on one machine the daemon holds it
// already) and uploads it when the daemon does not hold it. It prints the
// build's steps and output to w, secrets redacted, and returns the
// request to send. A build that fails is reported to the daemon (an
// event there, naming by) before its error is returned.
func prepareDeploy(ctx context.Context, c *client.Client, file string, configOnly bool, by string, w io.Writer) (client.DeployOptions, error) {
	cfg, err := loadAppConfig(file)
	if err != nil {
		return client.DeployOptions{}, err
	}
	if c.App == "" {
		c.App = cfg.Name // a shoal server chooses (or creates) the app by it
	}
	env, err := cfg.Env(os.LookupEnv) // env_from_host: the deployer's environment, as Kamal's secrets
	if err != nil {
		return client.DeployOptions{}, &UsageError{Err: fmt.Errorf("invalid configuration:\n%w", err)}
	}
	opts := client.DeployOptions{ConfigOnly: configOnly, Config: cfg.Text(), ConfigFile: cfg.File}
	for _, v := range env {
		opts.Env = append(opts.Env, client.EnvVar{Name: v.Name, Value: v.Value, Secret: v.Secret})
	}
	if configOnly {
		return opts, nil
	}
	// The current release says whether an unbuilt artifact is the one
	// that runs; asking first also finds an unreachable daemon before a
	// long build.
	rels, err := c.Releases(ctx)
	newApp := client.IsStatus(err, http.StatusNotFound)
	switch {
	case newApp:
		// A shoal server without the app yet: this deploy creates it.
		rels = nil
	case err != nil:
		return client.DeployOptions{}, apiErr(err)
	}
	current := ""
	for _, r := range rels {
		if r.Current {
			current = r.Digest
		}
	}
	digest, err := buildHere(ctx, cfg, env, current, w)
	var bf *buildFailed
	if errors.As(err, &bf) && !newApp {
		// The daemon would not know of it otherwise; it stays the error
		// to report when the daemon cannot record it. A server without the
		// app has no event log for it yet.
		if rerr := c.ReportBuildFailure(ctx, bf.reason, by); rerr != nil {
			fmt.Fprintf(w, "  the build's failure could not be recorded as an event: %v\n", apiErr(rerr))
		}
	}
	if err != nil {
		return client.DeployOptions{}, err
	}
	if digest, err = pushToRegistry(ctx, cfg, digest, w); err != nil {
		return client.DeployOptions{}, err
	}
	if err := uploadIfMissing(ctx, c, cfg, digest, w); err != nil {
		return client.DeployOptions{}, err
	}
	opts.Digest = digest
	return opts, nil
}

// buildHere builds cfg's artifact once (BuildOnce: reused when the source
// is unchanged) and says which it is, as log lines of the deploy.
func buildHere(ctx context.Context, cfg *config.App, env config.Env, current string, w io.Writer) (string, error) {
	fmt.Fprintln(w, "  checking the app's source for changes")
	arts, err := openArtifacts(cfg)
	if err != nil {
		return "", err
	}
	out := &redactLines{w: w, env: env}
	spec, err := cfg.BuildSpec(out)
	if err != nil {
		return "", err
	}
	art, built, err := arts.BuildOnce(ctx, spec)
	out.flush()
	if err != nil {
		return "", &buildFailed{reason: env.Redact(buildFailure(err))}
	}
	d := art.Digest
	switch {
	case built:
		fmt.Fprintf(w, "  built artifact %s\n", short(d))
	case d == current:
		fmt.Fprintf(w, "  source unchanged: reusing artifact %s, no build\n", short(d))
	default:
		fmt.Fprintf(w, "  reusing artifact %s built earlier from this source\n", short(d))
	}
	return d, nil
}

// buildFailed is the error of a build that failed (not of its set-up):
// reason says why in one phrase, secrets redacted.
type buildFailed struct{ reason string }

func (e *buildFailed) Error() string { return e.reason }

// uploadIfMissing uploads artifact d from cfg's store unless the daemon
// holds it (on the daemon's machine it shares the store, so it does). Of
// an image stored by layers, the layers' artifacts the daemon lacks go
// first, each asked for by digest, so a deploy that changed one layer
// uploads that layer and the small image artifact only.
func uploadIfMissing(ctx context.Context, c *client.Client, cfg *config.App, d string, w io.Writer) error {
	held, err := c.HasArtifact(ctx, d)
	if err != nil {
		return apiErr(err)
	}
	if held {
		return nil
	}
	arts, err := openArtifacts(cfg)
	if err != nil {
		return err
	}
	layers, err := arts.Layers(d)
	if err != nil {
		return err
	}
	sent := map[string]bool{}
	for _, l := range layers {
		if sent[l.Artifact] {
			continue
		}
		sent[l.Artifact] = true
		held, err := c.HasArtifact(ctx, l.Artifact)
		if err != nil {
			return apiErr(err)
		}
		if held {
			fmt.Fprintf(w, "  layer %s held by the server\n", short(l.DiffID))
			continue
		}
		if err := upload(ctx, c, arts, l.Artifact, "layer "+short(l.DiffID), w); err != nil {
			return err
		}
	}
	return upload(ctx, c, arts, d, "artifact "+short(d), w)
}

// upload sends artifact d of arts to the daemon; what names it in the
// output.
func upload(ctx context.Context, c *client.Client, arts *release.Store, d, what string, w io.Writer) error {
	a, err := arts.Stat(d)
	if err != nil {
		return err
	}
	rc, err := arts.Reader(d)
	if err != nil {
		return err
	}
	defer rc.Close()
	fmt.Fprintf(w, "  uploading %s (%s)\n", what, byteSize(a.Size))
	if err := c.UploadArtifact(ctx, d, rc, a.Size); err != nil {
		return fmt.Errorf("upload %s: %w", what, apiErr(err))
	}
	return nil
}

// openArtifacts opens the artifact store of cfg's data directory with the
// limits of its build section, as `shoal up` does.
func openArtifacts(cfg *config.App) (*release.Store, error) {
	arts, err := release.Open(filepath.Join(cfg.DataDir, "artifacts"), nil)
	if err != nil {
		return nil, err
	}
	if b := cfg.Build; b != nil {
		arts.SetLimits(release.Limits{MaxBytes: int64(b.MaxUnpackedSize), MaxEntries: b.MaxUnpackedFiles})
	}
	return arts, nil
}

// buildFailure says why a build failed in one phrase: the command and its
// exit status for a failed build command, else the release package's
// error.
func buildFailure(err error) string {
	var be *release.BuildError
	if !errors.As(err, &be) {
		return err.Error()
	}
	if be.ExitCode >= 0 {
		return fmt.Sprintf("build command %q exited with status %d", be.Command, be.ExitCode)
	}
	return fmt.Sprintf("build command %q failed: %v", be.Command, be.Err)
}

// short abbreviates a digest for messages.
func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// byteSize is n bytes for people: "812 B", "4.2 MB".
func byteSize(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}

// redactLines writes the build's output to w a line at a time, indented
// as the deploy's log lines, with env's secrets replaced: a secret split
// over two writes is still matched, since lines are whole when redacted.
type redactLines struct {
	w       io.Writer
	env     config.Env
	partial []byte
}

func (r *redactLines) Write(p []byte) (int, error) {
	r.partial = append(r.partial, p...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintln(r.w, "  "+r.env.Redact(string(r.partial[:i])))
		r.partial = r.partial[i+1:]
	}
	return len(p), nil
}

// flush writes a last line without its newline.
func (r *redactLines) flush() {
	if len(r.partial) > 0 {
		fmt.Fprintln(r.w, "  "+r.env.Redact(string(r.partial)))
		r.partial = nil
	}
}
