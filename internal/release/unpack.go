package release

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// entryChecker validates the entries of one tar stream in order. It refuses anything that
// could write outside the destination: absolute names, ".." components, symlinks whose
// target leaves the tree, entries below a symlink (a chain of in-tree links can still
// point out, so no path is ever resolved through a link we created), duplicates, and
// every type other than regular file, directory and symlink (sparse files included: their
// holes would let a small archive write unbounded data).
type entryChecker struct {
	seen  map[string]bool
	links map[string]string // name -> target, for checkLinks at the end
	tally tally
}

// maxNameLen is PATH_MAX on Linux: a longer name cannot be created anyway, and a PAX name
// of a megabyte with many components would make directory creation quadratic.
const maxNameLen = 4096

func newEntryChecker(lim Limits) *entryChecker {
	return &entryChecker{seen: map[string]bool{}, links: map[string]string{}, tally: tally{lim: lim.withDefaults()}}
}

// finish checks what needs the whole stream: that no chain of the links
// seen leads out of the tree (see checkLinks).
func (c *entryChecker) finish() error { return checkLinks(c.links) }

// check validates h and returns its cleaned, slash-separated relative name.
func (c *entryChecker) check(h *tar.Header) (string, error) {
	raw := h.Name
	if h.Typeflag == tar.TypeDir {
		raw = strings.TrimSuffix(raw, "/")
	}
	name := path.Clean(raw)
	switch {
	case len(raw) > maxNameLen || len(h.Linkname) > maxNameLen:
		return "", fmt.Errorf("%w: name or link target of %.64q... longer than %d bytes", ErrUnsafeEntry, h.Name, maxNameLen)
	case raw == "" || name == "." || strings.ContainsRune(raw, 0):
		return "", fmt.Errorf("%w: empty or invalid name %q", ErrUnsafeEntry, h.Name)
	case path.IsAbs(raw):
		return "", fmt.Errorf("%w: absolute name %q", ErrUnsafeEntry, h.Name)
	case name == ".." || strings.HasPrefix(name, "../") || hasDotDot(raw):
		return "", fmt.Errorf("%w: name %q leaves the destination", ErrUnsafeEntry, h.Name)
	}
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if _, ok := c.links[p]; ok {
			return "", fmt.Errorf("%w: %q is below symlink %q", ErrUnsafeEntry, name, p)
		}
	}
	if c.seen[name] {
		return "", fmt.Errorf("%w: duplicate entry %q", ErrUnsafeEntry, name)
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	case tar.TypeSymlink:
		if !linkInside(name, h.Linkname) {
			return "", fmt.Errorf("%w: symlink %q -> %q leaves the destination", ErrUnsafeEntry, name, h.Linkname)
		}
		c.links[name] = h.Linkname
	default:
		return "", fmt.Errorf("%w: %q has unsupported type %q", ErrUnsafeEntry, name, h.Typeflag)
	}
	for k := range h.PAXRecords {
		// A sparse file expands holes on read: a few header bytes could declare terabytes.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return "", fmt.Errorf("%w: %q is a sparse file", ErrUnsafeEntry, name)
		}
	}
	if h.Size < 0 {
		return "", fmt.Errorf("%w: %q has negative size", ErrUnsafeEntry, name)
	}
	size := int64(0)
	if h.Typeflag == tar.TypeReg {
		size = h.Size
	}
	if err := c.tally.add(name, size); err != nil {
		return "", err
	}
	c.seen[name] = true
	return name, nil
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// scanTar reads a whole tar stream, validating every entry (and the limits) without
// writing anything.
func scanTar(ctx context.Context, r io.Reader, lim Limits) error {
	tr := tar.NewReader(r)
	c := newEntryChecker(lim)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return c.finish()
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if _, err := c.check(h); err != nil {
			return err
		}
	}
}

// extractTar writes the tar stream r into dest, an existing empty directory. All writes go
// through an os.Root, which also refuses to follow links out of dest, as a second line of
// defence behind entryChecker. Permission bits are applied at the end, so a read-only
// directory in the archive does not prevent writing its contents. The caller must not
// use dest after an error: links are checked as a whole only at the end.
func extractTar(ctx context.Context, r io.Reader, dest string, lim Limits) error {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("open destination: %w", err)
	}
	defer root.Close()
	tr := tar.NewReader(r)
	c := newEntryChecker(lim)
	modes := map[string]fs.FileMode{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name, err := c.check(h)
		if err != nil {
			return err
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", dir, err)
			}
		}
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o755); err != nil && !os.IsExist(err) {
				return fmt.Errorf("create %s: %w", name, err)
			}
			if fi, err := root.Lstat(name); err != nil || !fi.IsDir() {
				return fmt.Errorf("%w: %q is not a directory", ErrUnsafeEntry, name)
			}
			modes[name] = mode
		case tar.TypeSymlink:
			// Created at the end, once the chains of all links are checked, so a
			// link leading out never exists, not even in the temp directory.
		case tar.TypeReg:
			if err := writeEntry(root, name, tr); err != nil {
				return err
			}
			modes[name] = mode
		}
	}
	if err := c.finish(); err != nil {
		return err
	}
	for name, target := range c.links {
		if err := root.Symlink(target, name); err != nil {
			return fmt.Errorf("symlink %s: %w", name, err)
		}
	}
	// Deepest first, so a directory loses its write bit only after its children are done.
	names := make([]string, 0, len(modes))
	for n := range modes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[i] > names[j] })
	for _, n := range names {
		if err := root.Chmod(n, modes[n]); err != nil {
			return fmt.Errorf("chmod %s: %w", n, err)
		}
	}
	return nil
}

func writeEntry(root *os.Root, name string, r io.Reader) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
