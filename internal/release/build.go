package release

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// BuildSpec says how to build an app and what to pack.
type BuildSpec struct {
	// Dir is the app folder. The build command runs in it and may write into it.
	Dir string
	// Command is run as `/bin/sh -c Command` in Dir. Empty means no build: Output is
	// packed as it is.
	Command string
	// Output is the folder to pack, relative to Dir; "" or "." packs Dir itself.
	Output string
	// Env is added to this process's environment for the build command.
	Env []string
	// Log receives the build command's stdout and stderr; nil discards them.
	Log io.Writer
	// Exclude lists paths left out of the artifact and of the source fingerprint, relative
	// to Dir or absolute inside it: Shoal's data directory when it lies in the app folder,
	// for example. ".git" is always excluded; node_modules is not.
	Exclude []string
	// Image, when set, makes the artifact a container image: after Command, the Output
	// folder (less Exclude) is its build context, and the saved image Image returns is
	// stored as the artifact (PutTar) instead of the folder.
	Image ImageFunc
	// ImageKey says what else the image depends on (Dockerfile path, target, build
	// arguments); it is part of the build key, so a change of it rebuilds.
	ImageKey string
}

func (b BuildSpec) outputDir() string {
	if b.Output == "" || b.Output == "." {
		return b.Dir
	}
	return filepath.Join(b.Dir, b.Output)
}

// absExclude returns Exclude as absolute paths, so it can be applied to Output too.
func (b BuildSpec) absExclude() []string {
	out := make([]string, 0, len(b.Exclude))
	for _, e := range b.Exclude {
		if !filepath.IsAbs(e) {
			e = filepath.Join(b.Dir, e)
		}
		out = append(out, e)
	}
	return out
}

// BuildError is returned when the build command fails.
type BuildError struct {
	Command  string
	ExitCode int // -1 when killed by a signal or not started
	Err      error
}

// Error names the command and its exit status.
func (e *BuildError) Error() string {
	return fmt.Sprintf("build command %q failed (exit %d): %v", e.Command, e.ExitCode, e.Err)
}

// Unwrap returns the underlying error, such as an *exec.ExitError.
func (e *BuildError) Unwrap() error { return e.Err }

// Build runs the build command, then packs the output folder into an artifact and stores
// it. When ctx ends the command's whole process group is killed. A failed build or pack
// stores nothing. Builds of different specs may run concurrently.
func (s *Store) Build(ctx context.Context, spec BuildSpec) (Artifact, error) {
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return Artifact{}, fmt.Errorf("build: %w", err)
	}
	spec.Dir = dir
	if err := runBuild(ctx, spec); err != nil {
		return Artifact{}, fmt.Errorf("build: %w", err)
	}
	out := spec.outputDir()
	if fi, err := os.Stat(out); err != nil || !fi.IsDir() {
		return Artifact{}, fmt.Errorf("build: output %q is not a directory after the build", spec.Output)
	}
	if spec.Image != nil {
		return s.buildImage(ctx, spec, out)
	}
	return s.pack(ctx, out, spec.absExclude())
}

func runBuild(ctx context.Context, spec BuildSpec) error {
	if strings.TrimSpace(spec.Command) == "" {
		return nil
	}
	log := spec.Log
	if log == nil {
		log = io.Discard
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", spec.Command)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second // a straggler holding the output pipe must not hang us
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return &BuildError{Command: spec.Command, ExitCode: code, Err: err}
	}
	return nil
}

// pack writes the deterministic tar.gz of root into a temp file and commits it.
func (s *Store) pack(ctx context.Context, root string, exclude []string) (Artifact, error) {
	tmp, err := os.CreateTemp(s.tmpDir(), "build-*.tar.gz")
	if err != nil {
		return Artifact{}, fmt.Errorf("pack: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	gz := gzip.NewWriter(bw)
	err = writeTar(ctx, io.MultiWriter(h, gz), root, exclude, s.limits)
	if err == nil {
		err = gz.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		tmp.Close()
		return Artifact{}, fmt.Errorf("pack %s: %w", root, err)
	}
	return s.commit(tmp, formatDigest(h.Sum(nil)))
}

// BuildOnce returns the artifact of spec, building it only when needed: it fingerprints
// the source (see SourceDigest; the Output folder and Exclude are left out unless Output is
// the app folder itself) and looks up the key (fingerprint, Command, Output, Env) in the
// store's index. When the key is known and its artifact is still stored, that artifact is
// returned with built=false and nothing runs. Otherwise it builds, stores, and records the
// key both for the tree as it was before the build and as the build left it (a build that
// writes into Dir, e.g. `npm ci`, would otherwise never match again).
//
// The contract behind the shortcut: a build is a function of the source tree, the command,
// and Env. A build that also depends on something else (network, time) is built once per
// source change only. BuildOnce calls are serialised per Store.
func (s *Store) BuildOnce(ctx context.Context, spec BuildSpec) (a Artifact, built bool, err error) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return Artifact{}, false, fmt.Errorf("build once: %w", err)
	}
	spec.Dir = dir
	before, err := s.buildKey(ctx, spec)
	if err != nil {
		return Artifact{}, false, fmt.Errorf("build once: %w", err)
	}
	if d, ok := s.lookupBuild(before); ok && s.Has(d) {
		a, err := s.Stat(d)
		if err == nil {
			s.logger.Debug("build skipped, source unchanged", "digest", d)
		}
		return a, false, err
	}
	a, err = s.Build(ctx, spec)
	if err != nil {
		return Artifact{}, false, err
	}
	after, err := s.buildKey(ctx, spec)
	if err != nil {
		return Artifact{}, false, fmt.Errorf("build once: %w", err)
	}
	if err := s.recordBuild(a.Digest, before, after); err != nil {
		return Artifact{}, false, fmt.Errorf("build once: %w", err)
	}
	return a, true, nil
}

func (s *Store) buildKey(ctx context.Context, spec BuildSpec) (string, error) {
	exclude := spec.absExclude()
	if spec.outputDir() != spec.Dir {
		exclude = append(exclude, spec.outputDir())
	}
	src, err := SourceDigest(ctx, spec.Dir, exclude)
	if err != nil {
		return "", err
	}
	key := []any{src, spec.Command, filepath.Clean(spec.Output), spec.Env}
	if spec.Image != nil {
		key = append(key, "image", spec.ImageKey)
	}
	b, err := json.Marshal(key)
	if err != nil {
		return "", err
	}
	return formatDigest(sha256Sum(b)), nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
