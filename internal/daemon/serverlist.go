package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/shoal-dev/shoal/internal/agent"
)

// serverList is the fleet URLs a node of the fleet (an agent, or a
// balancer node) may call: the one server of a fleet, or every server of
// a cluster (agent.yaml's server, lb.yaml's server.url). Any of a
// cluster's servers leads a node to the leader (a follower answers 307),
// so the node uses one at a time, the current one, and moves to the next
// in the file's order when it cannot be reached. Safe for concurrent use.
type serverList struct {
	mu   sync.Mutex
	file []string // the configuration's
	urls []string // file, then those learned (serverlist_learn.go)
	cur  int
	path string // ServersFile; "": learned ones are not kept
}

// newServerList returns a list of urls (at least one) starting at the
// first.
func newServerList(urls []string) *serverList {
	return &serverList{file: append([]string(nil), urls...), urls: append([]string(nil), urls...)}
}

// current is the URL in use.
func (l *serverList) current() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.urls[l.cur]
}

// failed moves on from u to the next URL, if u is still the current one
// (another caller may have moved on already); it reports whether the list
// came back to its first URL, a whole round having failed.
func (l *serverList) failed(u string) (round bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.urls[l.cur] != u {
		return false
	}
	l.cur = (l.cur + 1) % len(l.urls)
	return l.cur == 0
}

// all returns the URLs, the current one first, then the others in order.
func (l *serverList) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.urls))
	for i := range l.urls {
		out = append(out, l.urls[(l.cur+i)%len(l.urls)])
	}
	return out
}

// try calls fn with each URL, the current one first, until one succeeds
// (it becomes the current one) or ctx ends; it returns the errors of
// every URL tried when none did.
func (l *serverList) try(ctx context.Context, fn func(u string) error) error {
	var errs []error
	for _, u := range l.all() {
		err := fn(u)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
		l.failed(u)
	}
	return errors.Join(errs...)
}

// artifactSource fetches artifacts from the servers of l (an agent's
// ArtifactSource): any server serves every artifact its replica names,
// so a fetch that fails on one is tried on the next.
type artifactSource struct {
	servers *serverList
	src     agent.HTTPSource // Base is set per call
}

// Fetch implements agent.ArtifactSource.
func (s *artifactSource) Fetch(ctx context.Context, digest string) (io.ReadCloser, error) {
	var body io.ReadCloser
	err := s.servers.try(ctx, func(u string) error {
		src := s.src
		src.Base = u
		b, err := src.Fetch(ctx, digest)
		body = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch from every server: %w", err)
	}
	return body, nil
}
