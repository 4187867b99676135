package config

import (
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// HostPool is one pool of elastic hosts of `shoal server` (server.yaml
// host_pools, issue 17): machines the server creates through a cloud
// provider's API when instances wait for capacity, and destroys when they
// stay empty. See docs/configuration.md.
type HostPool struct {
	// Name names the pool: its machines are tagged "shoal-pool:NAME" and
	// named NAME-1, NAME-2, ... (which are their hosts' names in the
	// fleet). Lowercase letters, digits and '-', 1 to 40. Required; two
	// servers sharing a provider account need different names.
	Name string `yaml:"name"`
	// Provider is the cloud API: "digitalocean". Required.
	Provider string `yaml:"provider"`
	// TokenFile holds the provider's API token, readable by its owner only
	// (mode 0600). Without it the token comes from the environment
	// (DIGITALOCEAN_TOKEN). Never logged.
	TokenFile string `yaml:"token_file"`
	// APIURL is the provider's API address. Default: the provider's own
	// (https://api.digitalocean.com/); tests point it at a fake.
	APIURL string `yaml:"api_url"`
	// Regions are where machines are made, spread evenly (new machines go
	// to the region with the fewest). A machine's region is its host's
	// zone. Required, at least one.
	Regions []string `yaml:"regions"`
	// Size is the machine size slug (such as s-2vcpu-4gb). Required.
	Size string `yaml:"size"`
	// Image is the image to boot: a snapshot's numeric id or an image
	// slug. It must hold the shoal binary at /usr/local/bin/shoal (a
	// snapshot of a host set up with `shoal setup`). Required.
	Image string `yaml:"image"`
	// MinHosts and MaxHosts bound the pool's machines. Default 0 and 1;
	// MaxHosts is at least 1 and MinHosts.
	MinHosts int `yaml:"min_hosts"`
	MaxHosts int `yaml:"max_hosts"`
	// EmptyAfter is how long a host of the pool stays without instances
	// before it is drained and destroyed. Default 10m.
	EmptyAfter Duration `yaml:"empty_after"`
	// JoinDeadline is how long a new machine has to join the fleet (and
	// a host of the pool to answer again once unreachable) before it is
	// destroyed and replaced; also the lifetime of its join token.
	// Default 10m.
	JoinDeadline Duration `yaml:"join_deadline"`
	// CheckEvery is the period of the pool's decisions. Default 5s.
	CheckEvery Duration `yaml:"check_every"`
}

// Defaults of a host pool.
const (
	DefaultHostPoolMax          = 1
	DefaultHostPoolEmptyAfter   = 10 * time.Minute
	DefaultHostPoolJoinDeadline = 10 * time.Minute
	DefaultHostPoolCheckEvery   = 5 * time.Second
)

var (
	hostPoolNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)
	regionRe       = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// checkHostPools sets the defaults of s.HostPools and reports their
// problems.
func checkHostPools(d *document, s *ServerFile, resolve func(string) string) {
	if len(s.HostPools) > 1 {
		d.errorf("host_pools", "%d pools: one pool is supported (each pool would add hosts for the same waiting instances)", len(s.HostPools))
	}
	if len(s.HostPools) > 0 && s.Fleet.URL == "" {
		d.errorf("fleet.url", "is required with host_pools: the address new machines join, which a loopback listener is not")
	}
	for i := range s.HostPools {
		p := &s.HostPools[i]
		at := fmt.Sprintf("host_pools[%d]", i)
		set := func(key string, apply func()) {
			if !d.has(at + "." + key) {
				apply()
			}
		}
		set("max_hosts", func() { p.MaxHosts = DefaultHostPoolMax })
		set("empty_after", func() { p.EmptyAfter = Duration(DefaultHostPoolEmptyAfter) })
		set("join_deadline", func() { p.JoinDeadline = Duration(DefaultHostPoolJoinDeadline) })
		set("check_every", func() { p.CheckEvery = Duration(DefaultHostPoolCheckEvery) })
		if !hostPoolNameRe.MatchString(p.Name) {
			d.errorf(at+".name", "%q: want lowercase letters, digits and '-', 1 to 40, starting and ending with a letter or digit", p.Name)
		}
		if p.Provider != "digitalocean" {
			d.errorf(at+".provider", "%q: want digitalocean", p.Provider)
		}
		p.TokenFile = resolve(p.TokenFile)
		if p.APIURL != "" {
			if u, err := url.Parse(p.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				d.errorf(at+".api_url", "%q: want an http or https URL", p.APIURL)
			}
		}
		if len(p.Regions) == 0 {
			d.errorf(at+".regions", "is required: at least one region slug, such as nyc1")
		}
		seen := map[string]bool{}
		for j, r := range p.Regions {
			switch {
			case !regionRe.MatchString(r):
				d.errorf(fmt.Sprintf("%s.regions[%d]", at, j), "%q is not a region slug (lowercase letters, digits and '-')", r)
			case seen[r]:
				d.errorf(fmt.Sprintf("%s.regions[%d]", at, j), "%q given twice", r)
			}
			seen[r] = true
		}
		if p.Size == "" {
			d.errorf(at+".size", "is required: the machine size slug, such as s-2vcpu-4gb")
		}
		if p.Image == "" {
			d.errorf(at+".image", "is required: a snapshot id or image slug with shoal at /usr/local/bin/shoal")
		}
		if p.MinHosts < 0 {
			d.errorf(at+".min_hosts", "must not be negative, got %d", p.MinHosts)
		}
		if p.MaxHosts < 1 || p.MaxHosts < p.MinHosts {
			d.errorf(at+".max_hosts", "must be at least 1 and min_hosts (%d), got %d", p.MinHosts, p.MaxHosts)
		}
		for _, k := range []struct {
			key string
			v   Duration
		}{{"empty_after", p.EmptyAfter}, {"join_deadline", p.JoinDeadline}, {"check_every", p.CheckEvery}} {
			if k.v <= 0 {
				d.errorf(at+"."+k.key, "must be more than 0, got %s", k.v.D())
			}
		}
	}
}
