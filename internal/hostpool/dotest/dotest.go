// Package dotest is a fake DigitalOcean API for tests of elastic hosts
// (issue 17): an HTTP server that serves the endpoints the hostpool
// driver uses (droplets by tag, create, get, delete; reserved IP assign)
// with godo's own request and response types. Creating a droplet "boots"
// it after Options.CreateDelay by calling Options.Boot with the droplet
// and its user-data (a test runs the user-data's agent on a lab host).
// Every request is checked: the credential must be in the Authorization
// header (Bearer) and nowhere else, in no header, URL or body.
//
// Failures are injected with Fail: the next n requests are answered with
// a status (a 429 carries Retry-After and DigitalOcean's rate-limit
// headers).
package dotest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/godo"

	"github.com/shoal-dev/shoal/internal/hostpool"
)

// Options configures a Fake.
type Options struct {
	// Token is the credential every request must carry. Required.
	Token string
	// CreateDelay is how long a droplet stays "new" before Boot runs.
	CreateDelay time.Duration
	// Boot, when set, runs in a goroutine of the fake once a droplet's
	// CreateDelay has passed; it returns the droplet's private address.
	// Its ctx ends when the droplet is destroyed or the fake closed.
	Boot func(ctx context.Context, d godo.Droplet, userData string) (ip string, err error)
	// Destroyed, when set, is called (in the request's goroutine) when a
	// droplet is deleted, after its Boot's ctx ended.
	Destroyed func(d godo.Droplet)
}

// Fake is a fake DigitalOcean API. Serve it with Serve; Close it.
type Fake struct {
	o   Options
	srv *http.Server

	mu        sync.Mutex
	droplets  map[int]*droplet
	nextID    int
	fail      []int // statuses of the next requests
	leaks     []string
	unauth    int
	creates   int
	deletes   int
	failed    int
	assigned  map[string]int // reserved ip -> droplet id
	userDatas map[string]string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type droplet struct {
	d      godo.Droplet
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Fake; it serves nothing until Serve.
func New(o Options) *Fake {
	f := &Fake{o: o, droplets: map[int]*droplet{}, nextID: 1000, assigned: map[string]int{}, userDatas: map[string]string{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/droplets", f.list)
	mux.HandleFunc("POST /v2/droplets", f.create)
	mux.HandleFunc("GET /v2/droplets/{id}", f.get)
	mux.HandleFunc("DELETE /v2/droplets/{id}", f.delete)
	mux.HandleFunc("POST /v2/reserved_ips/{ip}/actions", f.assign)
	f.srv = &http.Server{Handler: f.check(mux), ReadHeaderTimeout: 10 * time.Second}
	return f
}

// Serve serves the API on ln in a goroutine the Fake owns and returns its
// URL (http://ln's address/).
func (f *Fake) Serve(ln net.Listener) string {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = f.srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String() + "/"
}

// Close stops serving, ends every boot and waits for the fake's goroutines.
func (f *Fake) Close() {
	_ = f.srv.Close()
	f.cancel()
	f.wg.Wait()
}

// Fail answers the next n requests with status (429: rate limited).
func (f *Fake) Fail(n, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.fail = append(f.fail, status)
	}
}

// Stats are the fake's counters.
type Stats struct {
	Creates, Deletes, Failed, Unauthorized int
	// Leaks names each request where the credential appeared outside the
	// Authorization header.
	Leaks []string
}

// Stats returns the counters so far.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Creates: f.creates, Deletes: f.deletes, Failed: f.failed, Unauthorized: f.unauth, Leaks: slices.Clone(f.leaks)}
}

// Droplets returns the droplets that exist, sorted by name.
func (f *Fake) Droplets() []godo.Droplet {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]godo.Droplet, 0, len(f.droplets))
	for _, d := range f.droplets {
		out = append(out, d.d)
	}
	slices.SortFunc(out, func(a, b godo.Droplet) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// UserData returns the user-data droplet name was created with.
func (f *Fake) UserData(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.userDatas[name]
}

// Assigned returns the droplet the reserved ip points at (0: none).
func (f *Fake) Assigned(ip string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.assigned[ip]
}

// check verifies the credential of every request and injects failures.
func (f *Fake) check(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			apiError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		where := f.leak(r, body)
		f.mu.Lock()
		if where != "" {
			f.leaks = append(f.leaks, r.Method+" "+r.URL.Path+": in "+where)
		}
		if r.Header.Get("Authorization") != "Bearer "+f.o.Token {
			f.unauth++
			f.mu.Unlock()
			apiError(w, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
			return
		}
		status := 0
		if len(f.fail) > 0 {
			status, f.fail = f.fail[0], f.fail[1:]
			f.failed++
		}
		f.mu.Unlock()
		switch status {
		case 0:
			next.ServeHTTP(w, r)
		case http.StatusTooManyRequests:
			w.Header().Set("Retry-After", "1")
			w.Header().Set("RateLimit-Limit", "5000")
			w.Header().Set("RateLimit-Remaining", "0")
			w.Header().Set("RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10))
			apiError(w, status, "too_many_requests", "API Rate limit exceeded.")
		default:
			apiError(w, status, "server_error", "Server was unable to give you a response.")
		}
	})
}

// leak says where the token appears other than the Authorization header.
func (f *Fake) leak(r *http.Request, body []byte) string {
	tok := f.o.Token
	var where []string
	if strings.Contains(r.URL.String(), tok) || strings.Contains(r.RequestURI, tok) {
		where = append(where, "the URL")
	}
	for k, vs := range r.Header {
		if k == "Authorization" {
			continue
		}
		for _, v := range vs {
			if strings.Contains(v, tok) {
				where = append(where, "header "+k)
			}
		}
	}
	if strings.Contains(string(body), tok) {
		where = append(where, "the body")
	}
	return strings.Join(where, ", ")
}

func apiError(w http.ResponseWriter, status int, id, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "message": msg, "request_id": "fake"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type dropletRoot struct {
	Droplet *godo.Droplet `json:"droplet"`
}

type dropletsRoot struct {
	Droplets []godo.Droplet `json:"droplets"`
	Links    *godo.Links    `json:"links"`
	Meta     *godo.Meta     `json:"meta"`
}

func (f *Fake) list(w http.ResponseWriter, r *http.Request) {
	tag := r.URL.Query().Get("tag_name")
	f.mu.Lock()
	out := []godo.Droplet{}
	for _, d := range f.droplets {
		if tag == "" || slices.Contains(d.d.Tags, tag) {
			out = append(out, d.d)
		}
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b godo.Droplet) int { return a.ID - b.ID })
	writeJSON(w, http.StatusOK, dropletsRoot{Droplets: out, Links: &godo.Links{}, Meta: &godo.Meta{Total: len(out)}})
}

func (f *Fake) create(w http.ResponseWriter, r *http.Request) {
	// godo writes the image as a number (an id) or a string (a slug) and
	// has no decoder for it: the image is read here.
	var body struct {
		godo.DropletCreateRequest
		Image json.RawMessage `json:"image"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		apiError(w, http.StatusUnprocessableEntity, "unprocessable_entity", "bad body: "+err.Error())
		return
	}
	req := body.DropletCreateRequest
	if json.Unmarshal(body.Image, &req.Image.ID) != nil && json.Unmarshal(body.Image, &req.Image.Slug) != nil {
		apiError(w, http.StatusUnprocessableEntity, "unprocessable_entity", "image: want an id or a slug")
		return
	}
	if req.Name == "" || req.Region == "" || req.Size == "" || (req.Image.Slug == "" && req.Image.ID == 0) {
		apiError(w, http.StatusUnprocessableEntity, "unprocessable_entity", "name, region, size and image are required")
		return
	}
	f.mu.Lock()
	// Like DigitalOcean, a second droplet of a name is allowed: a driver
	// that asks twice makes a duplicate, which the tests look for.
	f.nextID++
	d := &droplet{d: godo.Droplet{ID: f.nextID, Name: req.Name, Status: "new", Region: &godo.Region{Slug: req.Region},
		SizeSlug: req.Size, Tags: slices.Clone(req.Tags), Created: time.Now().UTC().Format(time.RFC3339),
		Networks: &godo.Networks{}}, done: make(chan struct{})}
	var ctx context.Context
	ctx, d.cancel = context.WithCancel(f.ctx)
	f.droplets[d.d.ID] = d
	f.userDatas[req.Name] = req.UserData
	f.creates++
	dd := d.d
	f.wg.Add(1)
	f.mu.Unlock()
	go f.boot(ctx, d, dd, req.UserData)
	writeJSON(w, http.StatusAccepted, dropletRoot{Droplet: &dd})
}

// boot waits CreateDelay, runs Boot and records the address it returns.
func (f *Fake) boot(ctx context.Context, d *droplet, dd godo.Droplet, userData string) {
	defer f.wg.Done()
	defer close(d.done)
	t := time.NewTimer(f.o.CreateDelay)
	select {
	case <-ctx.Done():
		t.Stop()
		return
	case <-t.C:
	}
	ip := ""
	if f.o.Boot != nil {
		var err error
		if ip, err = f.o.Boot(ctx, dd, userData); err != nil {
			f.mu.Lock()
			d.d.Status = "off"
			f.mu.Unlock()
			return
		}
	}
	f.mu.Lock()
	d.d.Status = "active"
	if ip != "" {
		d.d.Networks = &godo.Networks{V4: []godo.NetworkV4{{IPAddress: ip, Type: "private"}}}
	}
	f.mu.Unlock()
}

func (f *Fake) find(w http.ResponseWriter, r *http.Request) *droplet {
	id, err := strconv.Atoi(r.PathValue("id"))
	f.mu.Lock()
	d := f.droplets[id]
	f.mu.Unlock()
	if err != nil || d == nil {
		apiError(w, http.StatusNotFound, "not_found", "The resource you were accessing could not be found.")
		return nil
	}
	return d
}

func (f *Fake) get(w http.ResponseWriter, r *http.Request) {
	if d := f.find(w, r); d != nil {
		f.mu.Lock()
		dd := d.d
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, dropletRoot{Droplet: &dd})
	}
}

func (f *Fake) delete(w http.ResponseWriter, r *http.Request) {
	d := f.find(w, r)
	if d == nil {
		return
	}
	f.mu.Lock()
	delete(f.droplets, d.d.ID)
	f.deletes++
	dd := d.d
	f.mu.Unlock()
	d.cancel()
	<-d.done
	if f.o.Destroyed != nil {
		f.o.Destroyed(dd)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Fake) assign(w http.ResponseWriter, r *http.Request) {
	var req godo.ActionRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req["type"] != "assign" {
		apiError(w, http.StatusUnprocessableEntity, "unprocessable_entity", fmt.Sprintf("want {\"type\": \"assign\", \"droplet_id\": N}: %v", err))
		return
	}
	idf, _ := req["droplet_id"].(float64)
	id := int(idf)
	f.mu.Lock()
	_, ok := f.droplets[id]
	if ok {
		f.assigned[r.PathValue("ip")] = id
	}
	f.mu.Unlock()
	if !ok {
		apiError(w, http.StatusUnprocessableEntity, "unprocessable_entity", fmt.Sprintf("droplet %d does not exist", id))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]*godo.Action{"action": {ID: id + 100000, Status: "in-progress", Type: "assign_ip", ResourceType: "reserved_ip"}})
}

// AgentFiles returns the agent.yaml and join token that user-data (made
// by hostpool.UserData) writes, as text; the address placeholder
// (hostpool.AdvertiseVar) is left for the caller to replace with the
// host's address. This is the fake's stand-in for cloud-init running the
// script: it runs what the script would start, not the script.
func AgentFiles(userData string) (agentYAML, token string, err error) {
	if agentYAML, err = heredoc(userData, hostpool.AgentYAMLMarker); err != nil {
		return "", "", err
	}
	if token, err = heredoc(userData, hostpool.TokenMarker); err != nil {
		return "", "", err
	}
	return agentYAML, strings.TrimSpace(token), nil
}

// heredoc returns the body of the here-document ended by marker.
func heredoc(script, marker string) (string, error) {
	lines := strings.Split(script, "\n")
	for i, l := range lines {
		if !strings.HasSuffix(l, "<<"+marker) && !strings.HasSuffix(l, "<<'"+marker+"'") {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			if lines[j] == marker {
				return strings.Join(lines[i+1:j], "\n") + "\n", nil
			}
		}
		return "", fmt.Errorf("user-data: here-document %s has no end", marker)
	}
	return "", fmt.Errorf("user-data: no here-document %s", marker)
}
