package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/internal/pki"
)

// joinTimeout bounds the join at a node's first start.
const joinTimeout = time.Minute

// nodeJoin says how a node of the fleet (`shoal agent`, or `shoal lb`
// following a server) finds its identity: kept under Dir, or got by a
// join with the token in TokenFile.
type nodeJoin struct {
	Dir       string   // the node's pki directory
	Servers   []string // the fleet URLs of the server or of every server of a cluster
	Name      string   // the name to join as
	TokenFile string   // "" when the file sets none
	// TokenKey names the token file's key and file in messages
	// ("join_token_file of /etc/shoal/agent.yaml"); How says where a
	// token comes from.
	TokenKey, How string
}

// nodeIdentity loads the node kept in j.Dir, or joins the fleet when that
// directory holds no certificate yet (a refused join is a
// *pki.RefusedError and writes no certificate).
func nodeIdentity(ctx context.Context, j nodeJoin, log *slog.Logger) (*pki.Node, error) {
	if _, err := os.Stat(filepath.Join(j.Dir, "node.crt")); err == nil {
		n, err := pki.LoadNode(j.Dir)
		if err != nil {
			return nil, fmt.Errorf("node identity: %w", err)
		}
		return n, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	token, err := j.readToken()
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	// Any server of a cluster takes the join (a follower redirects it to
	// the leader): try the next one only when one cannot be reached, not
	// when the join was refused (the token is the same everywhere).
	var errs []error
	for _, u := range j.Servers {
		n, err := pki.Join(jctx, u, token, j.Name, j.Dir)
		if err == nil {
			log.Info("joined the fleet", "node", j.Name, "server", u, "dir", j.Dir)
			return n, nil
		}
		if _, refused := errors.AsType[*pki.RefusedError](err); refused || jctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// readToken reads the join token from j.TokenFile.
func (j nodeJoin) readToken() (string, error) {
	f := j.TokenFile
	if f == "" {
		return "", fmt.Errorf("this node has not joined the fleet and %s is not set: set it and %s", j.TokenKey, j.How)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return "", fmt.Errorf("join token (%s): %w: %s", j.TokenKey, err, j.How)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("join token file %s (%s) is empty: %s", f, j.TokenKey, j.How)
	}
	return tok, nil
}
