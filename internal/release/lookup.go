package release

import (
	"context"
	"fmt"
	"path/filepath"
)

// Lookup reports which artifact BuildOnce would return for spec without
// building anything: it fingerprints the source as BuildOnce does and
// looks the key up in the build index. found is false when this source
// (with this command, output and build env) was never built, or its index
// entry is gone; digest may name an artifact that has been pruned since.
// It reads the source tree, so it costs what BuildOnce's check costs.
func (s *Store) Lookup(ctx context.Context, spec BuildSpec) (digest string, found bool, err error) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return "", false, fmt.Errorf("look up build: %w", err)
	}
	spec.Dir = dir
	key, err := s.buildKey(ctx, spec)
	if err != nil {
		return "", false, fmt.Errorf("look up build: %w", err)
	}
	digest, found = s.lookupBuild(key)
	return digest, found, nil
}
