package api

// DeployLine is one line of the NDJSON stream of POST /v1/deploy,
// /v1/rollback and /v1/env: exactly one of Log, Progress and Result is
// set. The stream ends with a Result.
type DeployLine struct {
	Log      string           `json:"log,omitempty"`
	Progress *RolloutProgress `json:"progress,omitempty"`
	Result   *DeployResult    `json:"result,omitempty"`
}

// DeployResult ends a deploy stream.
type DeployResult struct {
	OK      bool   `json:"ok"`
	Version int    `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
	// Unchanged is true when nothing needed deploying.
	Unchanged bool `json:"unchanged,omitempty"`
	// Final is the rollout's end state when one ran and failed.
	Final *RolloutProgress `json:"final,omitempty"`
	// Logs are the failing instance's last output lines, redacted.
	Logs []string `json:"logs,omitempty"`
}

// DeployRequest is the body of POST /v1/deploy: everything the deploy
// needs, so that the daemon reads nothing from the deployer's folder. It
// carries secrets (Env) and travels only over the authenticated admin API.
type DeployRequest struct {
	// ConfigOnly reuses the current release's artifact; Digest is then
	// empty.
	ConfigOnly bool `json:"config_only,omitempty"`
	// Wait waits for another deploy to end instead of failing with 409.
	Wait bool `json:"wait,omitempty"`
	// By names who deploys, for the lock message others see.
	By string `json:"by,omitempty"`
	// Config is the text of shoal.yaml. Required.
	Config string `json:"config"`
	// ConfigFile is shoal.yaml's path on the deployer's machine, for
	// messages only.
	ConfigFile string `json:"config_file,omitempty"`
	// Env is the release's environment as resolved on the deployer's
	// machine (run.env, env_from_host, the secrets file, the settings,
	// ROOT_URL), secrets marked; the daemon merges the `shoal env`
	// overrides over it.
	Env []EnvVar `json:"env,omitempty"`
	// Digest is the artifact to deploy ("sha256:<hex>"), uploaded before
	// (PUT /v1/artifacts/{digest}) unless the daemon holds it already.
	// Empty with ConfigOnly.
	Digest string `json:"digest,omitempty"`
}

// BuildFailure is the body of POST /v1/deploy/build-failed: `shoal deploy`
// builds where it runs, so it tells the daemon of a build that failed,
// which the daemon records as a "build" event. Reason is the deployer's
// one-line account of the failure, secrets already redacted.
type BuildFailure struct {
	Reason string `json:"reason"`
	// By names who deployed, as DeployRequest.By.
	By string `json:"by,omitempty"`
}

// RollbackRequest is the body of POST /v1/rollback; Version 0 means the
// previous release.
type RollbackRequest struct {
	Version int `json:"version"`
}

// EnvRequest is the body of POST /v1/env: overrides to set and names to
// unset, deployed as a config-only release.
type EnvRequest struct {
	Set   []EnvVar `json:"set,omitempty"`
	Unset []string `json:"unset,omitempty"`
	// Wait waits for another deploy to end instead of failing with 409.
	Wait bool `json:"wait,omitempty"`
}

// ErrorBody is the JSON body of every error answer of the admin API.
type ErrorBody struct {
	Error string `json:"error"`
}
