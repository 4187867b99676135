package release

import (
	"fmt"
	"path"
	"strings"
)

// maxLinkHops bounds how many links one resolution follows, as the kernel's
// ELOOP limit does (40 on Linux).
const maxLinkHops = 40

// checkLinks resolves every symlink of a tree for real: each target is
// followed component by component through the other symlinks of the same
// tree (links maps a slash-separated relative name to its target), and any
// link whose resolution goes above the tree's root, reaches an absolute
// target, or needs more than maxLinkHops links is refused. A lexical check of
// each link alone is not enough: "a/b -> ../.." is harmless by itself and
// "p -> a/b/../../etc" looks inside, but together they reach outside. Names
// that are not links in the tree (directories, files, missing names) are
// taken as directories, which is what a later-created directory would be.
func checkLinks(links map[string]string) error {
	for name, target := range links {
		if err := resolveLink(links, name, target); err != nil {
			return fmt.Errorf("%w: symlink %q -> %q %v", ErrUnsafeEntry, name, target, err)
		}
	}
	return nil
}

func resolveLink(links map[string]string, name, target string) error {
	var cur []string // the directory reached, as components below the root
	if d := path.Dir(name); d != "." {
		cur = strings.Split(d, "/")
	}
	if path.IsAbs(target) {
		return fmt.Errorf("is absolute")
	}
	pending := strings.Split(target, "/")
	hops := 0
	// Each step consumes a component; a hop adds at most maxNameLen of them
	// and there are at most maxLinkHops hops, so the loop is bounded.
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return fmt.Errorf("leaves the tree")
			}
			cur = cur[:len(cur)-1]
			continue
		}
		p := strings.Join(append(cur, c), "/")
		next, isLink := links[p]
		if !isLink {
			cur = append(cur, c)
			continue
		}
		if hops++; hops > maxLinkHops {
			return fmt.Errorf("needs more than %d links to resolve", maxLinkHops)
		}
		if path.IsAbs(next) {
			return fmt.Errorf("leaves the tree through %q -> %q", p, next)
		}
		pending = append(strings.Split(next, "/"), pending...)
	}
	return nil
}
