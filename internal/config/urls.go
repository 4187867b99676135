package config

import (
	"fmt"
	"net/url"
	"strings"
)

// URLList is a key that takes one URL or a list of them: agent.yaml's
// server and lb.yaml's server.url, the servers of a cluster that a fleet
// node may call (any of them leads it to the leader). A single string
// stays valid; a file written by Shoal keeps that form for one URL.
type URLList []string

// oneOrMany marks the slice types whose key also takes a single value
// (decode: a scalar is a list of one).
func (URLList) oneOrMany() {}

// MarshalYAML writes a list of one as a plain string, the form older
// files use.
func (l URLList) MarshalYAML() (any, error) {
	if len(l) == 1 {
		return l[0], nil
	}
	return []string(l), nil
}

// checkServerURLs validates the server URLs at path (such as "server" or
// "server.url"), each an https URL with a host and no path, none twice,
// at least one; what is missing says which listener to name (hint, such
// as "the server's agent listener"). It returns them with any trailing
// '/' removed.
func checkServerURLs(d *document, path string, urls URLList, example, hint string) URLList {
	if len(urls) == 0 {
		d.errorf(path, "is required: the URL of %s, such as %s, or a list of every server's", hint, example)
		return nil
	}
	out := make(URLList, 0, len(urls))
	seen := map[string]bool{}
	for i, raw := range urls {
		p := fmt.Sprintf("%s[%d]", path, i)
		if len(urls) == 1 {
			p = path
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			d.errorf(p, "must be an https URL with a host and no path, such as %s; got %q", example, raw)
			continue
		}
		s := strings.TrimSuffix(raw, "/")
		if seen[s] {
			d.errorf(p, "%s is listed twice", s)
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}
