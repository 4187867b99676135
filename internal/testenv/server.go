package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// ServerReady matches the line `shoal server` prints once it serves; the
// submatches are the admin API's URL, the fleet port's URL, the
// balancer's URL, the fleet CA's pin and the TLS balancer's URL (empty
// without balancer.tls_listen).
var ServerReady = regexp.MustCompile(`shoal server ready: admin (\S+) fleet (\S+) balancer (http://\S+) ca-pin (sha256:[0-9a-f]{64})(?: tls (https://\S+))?`)

// Server is a `shoal server` started by StartServer: the process and what
// its ready line and data directory said. The fields are read-only.
type Server struct {
	*Process
	AdminURL string
	FleetURL string
	LBURL    string // the shared balancer, such as http://10.77.0.1:80
	TLSURL   string // its balancer.tls_listen, such as https://127.0.0.1:8443; "" without one
	CAPin    string
	Token    string // the admin token, from <data_dir>/admin.token
}

// StartServer starts cmd, a `shoal server -c FILE` (in a lab: see
// Lab.Command), waits for its ready line (ServerReady) and reads the
// admin token from dataDir. It returns an error, with the output so far,
// when ctx ends or the process exits first; the process is then closed.
// Otherwise the caller owns the process (Close, or a test's cleanup).
func StartServer(ctx context.Context, cmd *exec.Cmd, dataDir string) (*Server, error) {
	p, err := StartProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("shoal server: %w", err)
	}
	m, err := p.WaitForLine(ctx, ServerReady)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("shoal server not ready: %w\n%s", err, p.Output())
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("shoal server: admin token: %w", err)
	}
	return &Server{Process: p, AdminURL: m[1], FleetURL: m[2], LBURL: m[3], CAPin: m[4], TLSURL: m[5],
		Token: strings.TrimSpace(string(tok))}, nil
}

// LabServerConfig is a server.yaml for a server in a lab's own namespace,
// with its data in "data" next to the file: the admin API on
// 127.0.0.1:7440 (loopback: plain HTTP), the fleet port on LabIP:7443
// and the balancer on LabIP:80 (any port is free in a lab). The
// balancer's drain_timeout, which caps every app's, is 40s, so an app's
// own (the fleet test's 35s, longer than the balancer's try timeout) is
// the one that applies.
func LabServerConfig() string {
	return fmt.Sprintf(`data_dir: data
admin:
  listen: 127.0.0.1:7440
fleet:
  listen: %[1]s:7443
  url: https://%[1]s:7443
balancer:
  listen: %[1]s:80
  drain_timeout: 40s
`, LabIP)
}

// LabAgentConfig is the agent.yaml of host h in zone, joining the server
// at fleetURL with the token in the file "token" and keeping its data in
// "data", both next to the file; the agent listens on the host's address,
// port 7441, and advertises that address.
func LabAgentConfig(fleetURL string, h *LabHost, zone string) string {
	return fmt.Sprintf("server: %s\njoin_token_file: token\nname: %s\nzone: %s\nlisten: %s:7441\nadvertise: %s\ndata_dir: data\n",
		fleetURL, h.Name, zone, h.IP, h.IP)
}
