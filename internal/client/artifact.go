package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// HasArtifact reports whether the admin API's shoal holds the artifact
// with digest d (HEAD /v1/artifacts/{digest}: 200 yes, 404 no); any other
// answer is an *APIError.
func (c *Client) HasArtifact(ctx context.Context, d string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.base+"/v1/artifacts/"+url.PathEscape(d), nil)
	if err != nil {
		return false, fmt.Errorf("admin api: %w", err)
	}
	resp, err := c.send(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, &APIError{Status: resp.StatusCode, Message: "HEAD /v1/artifacts/" + d + ": " + http.StatusText(resp.StatusCode)}
}

// UploadArtifact sends the artifact with digest d, read from r (the
// .tar.gz as release.Store keeps it, such as its Reader), with PUT
// /v1/artifacts/{digest}. It streams r: the file is never held in memory.
// size is r's length, sent as Content-Length (-1: unknown, sent chunked).
// The server computes the digest itself and refuses bytes that are
// another artifact (400, naming both digests) or a body over its limit
// (413), as an *APIError. When r is a file (an io.ReaderAt and
// io.Seeker) and size is known, a 503 with Retry-After (a cluster between
// leaders) sends it again from where it began; r's offset is not moved.
func (c *Client) UploadArtifact(ctx context.Context, d string, r io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v1/artifacts/"+url.PathEscape(d), io.NopCloser(r))
	if err != nil {
		return fmt.Errorf("admin api: %w", err)
	}
	req.ContentLength = size
	if body := resendable(r, size); body != nil {
		// A file can be sent again: a cluster electing a leader
		// answers 503 with Retry-After (doRetrying), and an upload by
		// digest may be repeated. Each sending reads its own section
		// of the file: the transport may still be reading the last
		// one's when the answer came early.
		req.Body, req.GetBody = body(), func() (io.ReadCloser, error) { return body(), nil }
	}
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("admin api: read PUT /v1/artifacts/%s: %w", d, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp.StatusCode, data)
	}
	return nil
}

// resendable returns a function that opens r afresh from its current
// offset for size bytes, when r can be read at an offset (a file, a
// bytes.Reader) and size is known; else nil.
func resendable(r io.Reader, size int64) func() io.ReadCloser {
	ra, ok := r.(interface {
		io.ReaderAt
		io.Seeker
	})
	if !ok || size < 0 {
		return nil
	}
	start, err := ra.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil
	}
	return func() io.ReadCloser { return io.NopCloser(io.NewSectionReader(ra, start, size)) }
}

// FetchArtifact copies the artifact with digest d (GET
// /v1/artifacts/{digest}) to w and returns the bytes copied. A 404 is an
// *APIError; a body shorter than its Content-Length is an error. The
// caller verifies the digest (release.Store.Put computes it).
func (c *Client) FetchArtifact(ctx context.Context, d string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/artifacts/"+url.PathEscape(d), nil)
	if err != nil {
		return 0, fmt.Errorf("admin api: %w", err)
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return 0, apiError(resp.StatusCode, data)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("admin api: GET /v1/artifacts/%s: %w", d, err)
	}
	return n, nil
}
