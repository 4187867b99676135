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
