package hostpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/godo"
)

// DigitalOceanURL is the API's address.
const DigitalOceanURL = "https://api.digitalocean.com/"

// DigitalOceanOptions configures NewDigitalOcean.
type DigitalOceanOptions struct {
	// Token is the API token (LoadToken). Required. It is sent only in
	// the Authorization header of each request.
	Token string
	// BaseURL is the API's address; "" means DigitalOceanURL (a test's
	// fake API sets its own).
	BaseURL string
	// Transport carries the requests; nil means http.DefaultTransport.
	Transport http.RoundTripper
}

// DigitalOcean is the Provider of DigitalOcean droplets, over godo. Its
// client does not retry by itself: the Pool retries with its own backoff
// and shows each failure as an event.
type DigitalOcean struct {
	c *godo.Client
}

// NewDigitalOcean returns the DigitalOcean provider.
func NewDigitalOcean(o DigitalOceanOptions) (*DigitalOcean, error) {
	if o.Token == "" {
		return nil, errors.New("digitalocean: no API token")
	}
	base := o.BaseURL
	if base == "" {
		base = DigitalOceanURL
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	rt := o.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc := &http.Client{Transport: bearer{token: o.Token, next: rt}, Timeout: time.Minute}
	c, err := godo.New(hc, godo.SetBaseURL(base), godo.SetUserAgent("shoal"))
	if err != nil {
		return nil, fmt.Errorf("digitalocean: %w", err)
	}
	return &DigitalOcean{c: c}, nil
}

// bearer adds the token to each request's Authorization header, and
// nowhere else.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// Name implements Provider.
func (d *DigitalOcean) Name() string { return "digitalocean" }

// List implements Provider: GET /v2/droplets?tag_name=TAG, every page.
func (d *DigitalOcean) List(ctx context.Context, tag string) ([]Machine, error) {
	var out []Machine
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for page := 0; page < 100; page++ {
		ds, resp, err := d.c.Droplets.ListByTag(ctx, tag, opt)
		if err != nil {
			return nil, apiError("list droplets tagged "+tag, resp, err)
		}
		for i := range ds {
			out = append(out, machineOf(&ds[i]))
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			slices.SortFunc(out, func(a, b Machine) int { return strings.Compare(a.Name, b.Name) })
			return out, nil
		}
		p, err := resp.Links.CurrentPage()
		if err != nil {
			return nil, fmt.Errorf("list droplets tagged %s: %w", tag, err)
		}
		opt.Page = p + 1
	}
	return nil, fmt.Errorf("list droplets tagged %s: more than 100 pages", tag)
}

// Create implements Provider: POST /v2/droplets. An image that is a
// number is an image (snapshot) id, else a slug.
func (d *DigitalOcean) Create(ctx context.Context, spec CreateSpec) (Machine, error) {
	img := godo.DropletCreateImage{Slug: spec.Image}
	if id, err := strconv.Atoi(spec.Image); err == nil {
		img = godo.DropletCreateImage{ID: id}
	}
	req := &godo.DropletCreateRequest{Name: spec.Name, Region: spec.Region, Size: spec.Size, Image: img,
		UserData: spec.UserData, Tags: spec.Tags, PrivateNetworking: true, Monitoring: true}
	dr, resp, err := d.c.Droplets.Create(ctx, req)
	if err != nil {
		return Machine{}, apiError("create droplet "+spec.Name, resp, err)
	}
	return machineOf(dr), nil
}

// Destroy implements Provider: DELETE /v2/droplets/ID (a 404 is done).
func (d *DigitalOcean) Destroy(ctx context.Context, id string) error {
	n, err := strconv.Atoi(id)
	if err != nil {
		return fmt.Errorf("destroy droplet %q: not a droplet id", id)
	}
	resp, err := d.c.Droplets.Delete(ctx, n)
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusNotFound {
			return nil
		}
		return apiError("destroy droplet "+id, resp, err)
	}
	return nil
}

// AssignReservedIP implements Provider: POST /v2/reserved_ips/IP/actions
// {"type": "assign", "droplet_id": ID}.
func (d *DigitalOcean) AssignReservedIP(ctx context.Context, ip, id string) error {
	n, err := strconv.Atoi(id)
	if err != nil {
		return fmt.Errorf("assign reserved ip %s: %q is not a droplet id", ip, id)
	}
	_, resp, err := d.c.ReservedIPActions.Assign(ctx, ip, n)
	if err != nil {
		return apiError("assign reserved ip "+ip+" to droplet "+id, resp, err)
	}
	return nil
}

// machineOf is a droplet as a Machine.
func machineOf(d *godo.Droplet) Machine {
	m := Machine{ID: strconv.Itoa(d.ID), Name: d.Name, Status: d.Status}
	if d.Region != nil {
		m.Region = d.Region.Slug
	}
	if t, err := time.Parse(time.RFC3339, d.Created); err == nil {
		m.Created = t
	}
	if ip, err := d.PrivateIPv4(); err == nil && ip != "" {
		m.IP = ip
	} else if ip, err := d.PublicIPv4(); err == nil {
		m.IP = ip
	}
	return m
}

// apiError wraps a godo error with its status and, for a 429, when to
// call again (the rate limit's reset).
func apiError(op string, resp *godo.Response, err error) error {
	e := &APIError{Op: op, Err: err}
	var er *godo.ErrorResponse
	if errors.As(err, &er) && er.Message != "" {
		e.Err = errors.New(er.Message)
	}
	if resp != nil && resp.Response != nil {
		e.Status = resp.StatusCode
		if e.Status == http.StatusTooManyRequests {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				e.RetryAfter = time.Duration(s) * time.Second
			} else if !resp.Rate.Reset.IsZero() {
				e.RetryAfter = time.Until(resp.Rate.Reset.Time)
			}
		}
	}
	return e
}

// DigitalOceanMetadataURL is the droplet metadata service's address, as
// seen from inside a droplet.
const DigitalOceanMetadataURL = "http://169.254.169.254/metadata/v1/"

// DropletID returns the id of the droplet this runs on, from the metadata
// service at base ("" means DigitalOceanMetadataURL): GET base + "id".
func DropletID(ctx context.Context, base string) (string, error) {
	if base == "" {
		base = DigitalOceanMetadataURL
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"id", nil)
	if err != nil {
		return "", fmt.Errorf("droplet metadata: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("droplet metadata (is this a droplet?): %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return "", fmt.Errorf("droplet metadata: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("droplet metadata %sid: %s", base, resp.Status)
	}
	id := strings.TrimSpace(string(b))
	if n, err := strconv.Atoi(id); err != nil || n <= 0 {
		return "", fmt.Errorf("droplet metadata %sid: %q is not a droplet id", base, id)
	}
	return id, nil
}
