package setup

import (
	"path/filepath"

	"github.com/shoal-dev/shoal/internal/config"
)

// LBNode is the lb.yaml of a balancer node that follows a server
// (`shoal lb` with a server section): Run writes it to LBConfigPath with
// the join token file LBTokenPath. Routes, pools, targets and
// certificates come from the server.
type LBNode struct {
	// Server is the server's fleet URL (its fleet.url), https://host:port.
	Server string
	// Name is the node's name in the fleet; "" becomes the host's own
	// name (uname -n, lowercased).
	Name string
	// DataDir is the node's data directory; "" means DefaultLBDataDir.
	DataDir string
	// Listeners are the addresses clients connect to; at least one.
	Listeners []LBListener
}

// LBListener is one of lb.yaml's listeners.
type LBListener struct {
	Name   string // such as http
	Listen string // host:port, such as :80
	// ACME serves the certificates the server obtains from its ACME CA
	// (HTTPS); false is plain HTTP.
	ACME bool
}

// The part of lb.yaml's schema setup writes; config.ParseLB, the
// schema's owner, checks every file before it is sent.
type lbNodeDoc struct {
	Listeners []lbListenerDoc `yaml:"listeners"`
	Server    lbServerDoc     `yaml:"server"`
}

type lbListenerDoc struct {
	Name   string `yaml:"name"`
	Listen string `yaml:"listen"`
	ACME   bool   `yaml:"acme,omitempty"`
}

type lbServerDoc struct {
	URL           string `yaml:"url"`
	JoinTokenFile string `yaml:"join_token_file"`
	Name          string `yaml:"name"`
	DataDir       string `yaml:"data_dir"`
}

// ValidateLB checks the lb.yaml that Options.LB would produce and returns
// its problems (a config.Problems naming LBConfigPath) or nil. An empty
// Name is not a problem: Run takes the host's.
func ValidateLB(n LBNode) error {
	if n.Name == "" {
		n.Name = "host" // a stand-in: the host's name is known once connected
	}
	_, err := lbYAML(n)
	return err
}

// lbYAML is n's lb.yaml text, checked by config.ParseLB so that the node
// will load what is written.
func lbYAML(n LBNode) ([]byte, error) {
	doc := lbNodeDoc{Server: lbServerDoc{URL: n.Server, JoinTokenFile: LBTokenPath, Name: n.Name, DataDir: lbDataDir(n)}}
	for _, l := range n.Listeners {
		doc.Listeners = append(doc.Listeners, lbListenerDoc(l))
	}
	return configText("balancer config", doc, func(data []byte) error {
		_, err := config.ParseLB(LBConfigPath, data)
		return err
	})
}

// lbDataDir is n's data directory as the node will resolve it:
// DefaultLBDataDir when unset, relative to the directory of LBConfigPath.
func lbDataDir(n LBNode) string {
	switch {
	case n.DataDir == "":
		return DefaultLBDataDir
	case filepath.IsAbs(n.DataDir):
		return n.DataDir
	}
	return filepath.Join(filepath.Dir(LBConfigPath), n.DataDir)
}
