package release

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// epoch is the modification time written into every tar header.
var epoch = time.Unix(0, 0)

// alwaysExcluded is left out of every packed tree and every source fingerprint.
var alwaysExcluded = []string{".git"}

// entry is one file system object found under a packed root.
type entry struct {
	rel  string // slash-separated, relative to the root, never "."
	mode fs.FileMode
	size int64
	link string // symlink target
	abs  string
}

// excluder matches slash-separated relative paths against exclusion prefixes.
type excluder []string

// newExcluder normalises patterns: relative patterns are taken relative to root, absolute
// ones are made relative to root (and dropped when outside it).
func newExcluder(root string, patterns []string) excluder {
	var ex excluder
	for _, p := range append(append([]string(nil), alwaysExcluded...), patterns...) {
		if p == "" {
			continue
		}
		if filepath.IsAbs(p) {
			r, err := filepath.Rel(root, p)
			if err != nil || r == "." || strings.HasPrefix(r, "..") {
				continue
			}
			p = r
		}
		p = path.Clean(filepath.ToSlash(p))
		if p == "." || p == ".." || strings.HasPrefix(p, "../") {
			continue
		}
		ex = append(ex, p)
	}
	return ex
}

func (ex excluder) match(rel string) bool {
	for _, p := range ex {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

// walk lists the tree under root in a deterministic order (lexical within each directory,
// a directory before its contents), skipping excluded paths and objects that are neither
// regular files, directories nor symlinks (sockets, fifos, devices).
func walk(ctx context.Context, root string, exclude []string) ([]entry, error) {
	ex := newExcluder(root, exclude)
	var out []entry
	links := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if ex.match(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{rel: rel, mode: info.Mode(), abs: p}
		switch {
		case info.Mode().IsRegular():
			e.size = info.Size()
		case info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !linkInside(rel, target) {
				return fmt.Errorf("%w: symlink %s -> %s leaves the tree", ErrUnsafeEntry, rel, target)
			}
			e.link = target
			links[rel] = target
		default:
			return nil
		}
		out = append(out, e)
		return nil
	})
	if err == nil {
		err = checkLinks(links)
	}
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return out, nil
}

// linkInside reports whether a symlink stored at name (slash-separated, relative) with the
// given target resolves, lexically, inside the tree.
func linkInside(name, target string) bool {
	if target == "" || path.IsAbs(target) || strings.Contains(target, "\x00") {
		return false
	}
	r := path.Join(path.Dir(name), target)
	return r != ".." && !strings.HasPrefix(r, "../") && !path.IsAbs(r)
}

// writeTar writes the deterministic tar of root to w; a tree over lim (as Unpack would
// count it) is an error.
func writeTar(ctx context.Context, w io.Writer, root string, exclude []string, lim Limits) error {
	entries, err := walk(ctx, root, exclude)
	if err != nil {
		return err
	}
	count := tally{lim: lim.withDefaults()}
	for _, e := range entries {
		if err := count.add(e.rel, e.size); err != nil {
			return err
		}
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := &tar.Header{Name: e.rel, Mode: int64(e.mode.Perm()), ModTime: epoch}
		switch {
		case e.mode.IsDir():
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case e.mode&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.link
		default:
			h.Typeflag = tar.TypeReg
			h.Size = e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar header %s: %w", e.rel, err)
		}
		if h.Typeflag == tar.TypeReg {
			if err := copyFile(tw, e.abs, e.size); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close tar: %w", err)
	}
	return nil
}

// copyFile copies exactly size bytes of the file at p to w; a file that changed size
// since it was listed is an error, so a tree modified during packing never packs silently.
func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("pack %s: %w", p, err)
	}
	if n != size {
		return fmt.Errorf("pack %s: file changed while packing (%d of %d bytes)", p, n, size)
	}
	return nil
}

// SourceDigest returns a fingerprint ("sha256:<hex>") of the tree under dir: every entry's
// relative path, type, permission bits, and the contents of regular files or the targets of
// symlinks. Modification times, owners and ".git" are ignored; exclude lists further paths
// (relative to dir, or absolute inside it, e.g. Shoal's data directory) to leave out.
// It reads every file, so it costs about as much as one sha256 pass over the source; it is
// meant to decide whether a build can be skipped, not to identify an artifact.
func SourceDigest(ctx context.Context, dir string, exclude []string) (string, error) {
	entries, err := walk(ctx, dir, exclude)
	if err != nil {
		return "", fmt.Errorf("source digest: %w", err)
	}
	h := sha256.New()
	for _, e := range entries {
		mode := strconv.FormatUint(uint64(e.mode.Perm()), 8)
		switch {
		case e.mode.IsDir():
			io.WriteString(h, "d\x00"+mode+"\x00"+e.rel+"\x00")
		case e.mode&fs.ModeSymlink != 0:
			io.WriteString(h, "l\x00"+e.rel+"\x00"+e.link+"\x00")
		default:
			fh := sha256.New()
			if err := copyFile(fh, e.abs, e.size); err != nil {
				return "", fmt.Errorf("source digest: %w", err)
			}
			io.WriteString(h, "f\x00"+mode+"\x00"+e.rel+"\x00")
			h.Write(fh.Sum(nil))
		}
	}
	return formatDigest(h.Sum(nil)), nil
}
