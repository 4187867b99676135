package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/shoal-dev/shoal/internal/api"
)

// DeployOptions are the options of Deploy: the body of POST /v1/deploy.
type DeployOptions = api.DeployRequest

// The rollout's wire types are those of the one vocabulary (package api).
type (
	// RolloutProgress is a rollout in progress (GET /v1/deploy, and the
	// progress lines of a deploy stream).
	RolloutProgress = api.RolloutProgress
	// RolloutInstance is one instance in RolloutProgress.
	RolloutInstance = api.RolloutInstance
	// RolloutFailure says which instance made a rollout go back, and why.
	RolloutFailure = api.RolloutFailure
	// RolloutSpec is what a rollout does.
	RolloutSpec = api.RolloutSpec
	// RolloutPolicy is the deploy policy a rollout runs with.
	RolloutPolicy = api.RolloutPolicy
)

// The deploy stream's lines are those of the one vocabulary.
type (
	// DeployLine is one line of a deploy stream: exactly one field is set.
	DeployLine = api.DeployLine
	// DeployResult ends a deploy stream.
	DeployResult = api.DeployResult
)

// EnvVar is one variable to set with SetEnv, or one override listed by
// Env (Value is "[redacted]" for secrets there).
type EnvVar = api.EnvVar

// Deploy sends what a release is made from (opts: shoal.yaml's text, the
// resolved environment, the artifact's digest, which must be uploaded
// first: HasArtifact, UploadArtifact) and calls fn (which may be nil)
// with every line of the stream as it comes. It returns the final result;
// a 409 (another deploy runs) or 400 (bad shoal.yaml or env, artifact not
// held) is an *APIError before any line. A result with OK false is
// returned with a nil error: the caller decides the exit status.
//
// A stream that breaks before its result (the cluster's leader died, and
// the follower that forwarded the deploy lost its answer) does not end
// the deploy, which a new leader resumes: Deploy follows it from the
// server's stored state to its end (followDeploy), and returns its
// outcome, or an error saying that the outcome is unknown and how to see
// it.
func (c *Client) Deploy(ctx context.Context, opts DeployOptions, fn func(DeployLine)) (*DeployResult, error) {
	return c.deployStream(ctx, "/v1/deploy", opts, deployWatch{digest: opts.Digest}, fn)
}

// Rollback rolls back to version (0: the previous release), streaming
// like Deploy.
func (c *Client) Rollback(ctx context.Context, version int, fn func(DeployLine)) (*DeployResult, error) {
	return c.deployStream(ctx, "/v1/rollback", api.RollbackRequest{Version: version}, deployWatch{target: version, rollback: true}, fn)
}

// SetEnv sets and unsets env overrides and deploys a config-only release,
// streaming like Deploy.
func (c *Client) SetEnv(ctx context.Context, set []EnvVar, unset []string, fn func(DeployLine)) (*DeployResult, error) {
	ch := &envChange{unset: unset}
	for _, v := range set {
		ch.set = append(ch.set, v.Name)
	}
	return c.deployStream(ctx, "/v1/env", api.EnvRequest{Set: set, Unset: unset}, deployWatch{env: ch}, fn)
}

// Env lists the env overrides, secrets redacted.
func (c *Client) Env(ctx context.Context) ([]EnvVar, error) {
	var vs []EnvVar
	err := c.do(ctx, http.MethodGet, "/v1/env", nil, &vs)
	return vs, err
}

// AbortDeploy turns the rollout in progress back; 409 when none runs.
func (c *Client) AbortDeploy(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/deploy/abort", nil, nil)
}

// ReportBuildFailure tells the daemon that the build of a `shoal deploy`
// failed where it ran (POST /v1/deploy/build-failed), so it is a "build"
// event as a failed build of `shoal up` is. reason is one line, secrets
// redacted; by names the deployer.
func (c *Client) ReportBuildFailure(ctx context.Context, reason, by string) error {
	return c.do(ctx, http.MethodPost, "/v1/deploy/build-failed", api.BuildFailure{Reason: reason, By: by}, nil)
}

// Rollout returns the rollout in progress, or nil.
func (c *Client) Rollout(ctx context.Context) (*RolloutProgress, error) {
	var p *RolloutProgress
	err := c.do(ctx, http.MethodGet, "/v1/deploy", nil, &p)
	return p, err
}

// deployStream sends a deploy's request and reads its stream; w says
// what identifies the deploy's release, should the stream break.
func (c *Client) deployStream(ctx context.Context, path string, in any, w deployWatch, fn func(DeployLine)) (*DeployResult, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	if fn == nil {
		fn = func(DeployLine) {}
	}
	w.before = c.newestRelease(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("admin api: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		aerr := apiError(resp.StatusCode, data)
		if resp.Header.Get(api.OutcomeHeader) == api.OutcomeUnknown {
			return c.followDeploy(ctx, w, aerr, fn)
		}
		return nil, aerr
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var l DeployLine
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, fmt.Errorf("admin api: decode deploy line: %w", err)
		}
		if l.Progress != nil && l.Progress.Spec.To > 0 {
			w.target = l.Progress.Spec.To
		}
		fn(l)
		if l.Result != nil {
			return l.Result, nil
		}
	}
	broke := sc.Err()
	if broke == nil {
		broke = errors.New("the stream ended without a result")
	}
	return c.followDeploy(ctx, w, fmt.Errorf("deploy stream: %w", broke), fn)
}
