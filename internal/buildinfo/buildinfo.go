// Package buildinfo says which build of shoal is running: the module
// version and the VCS commit that the Go toolchain records in the binary
// (runtime/debug.ReadBuildInfo), for `shoal version` and for the
// shoal_build_info metric. It is a leaf: anyone may import it.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Version, when set at link time with
// -ldflags "-X github.com/shoal-dev/shoal/internal/buildinfo.Version=v1.2.3",
// overrides the module version of the build info (a release pipeline that
// builds outside a tagged module, for example).
var Version string

// Info describes one build.
type Info struct {
	// Version is the -ldflags override, else the main module's version
	// ("v1.2.3", or a pseudo-version), else "dev" for a build from a
	// working tree ("(devel)").
	Version string
	// Commit is the VCS revision (vcs.revision); empty when the build
	// recorded none (go build -buildvcs=false, or no repository).
	Commit string
	// Time is the commit's time in RFC 3339 (vcs.time); may be empty.
	Time string
	// Modified reports uncommitted changes in the tree that was built
	// (vcs.modified).
	Modified bool
	// GoVersion is the toolchain that built the binary ("go1.26.8").
	GoVersion string
}

// Read returns the running binary's Info.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return FromBuildInfo(bi, Version)
}

// FromBuildInfo derives an Info from bi (nil: nothing recorded) and a
// version override (empty: none).
func FromBuildInfo(bi *debug.BuildInfo, override string) Info {
	in := Info{Version: override}
	if bi != nil {
		in.GoVersion = bi.GoVersion
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Commit = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		in.Version = "dev"
	}
	return in
}

// String is one line such as
// "v1.2.3 (commit 0123abcd4567, 2026-12-01T10:00:00Z, modified; go1.26.8)".
func (in Info) String() string {
	var parts []string
	if in.Commit != "" {
		c := "commit " + in.Commit
		if in.Time != "" {
			c += ", " + in.Time
		}
		if in.Modified {
			c += ", modified"
		}
		parts = append(parts, c)
	}
	if in.GoVersion != "" {
		parts = append(parts, in.GoVersion)
	}
	if len(parts) == 0 {
		return in.Version
	}
	return fmt.Sprintf("%s (%s)", in.Version, strings.Join(parts, "; "))
}

// Collector returns a collector of one gauge,
// shoal_build_info{version,commit,go_version} 1, that lets a dashboard
// tell which build each process runs. An unknown commit is "unknown".
func Collector(in Info) prometheus.Collector {
	commit := in.Commit
	if commit == "" {
		commit = "unknown"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "shoal_build_info",
		Help: "Always 1; its labels name the build: module version, VCS commit and Go version.",
		ConstLabels: prometheus.Labels{
			"version": in.Version, "commit": commit, "go_version": in.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// Gatherer returns a registry holding only Collector(Read()), to be
// served next to a process's other metrics.
func Gatherer() prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector(Read()))
	return reg
}
