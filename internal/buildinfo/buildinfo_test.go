package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123abcd"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	tests := []struct {
		name     string
		bi       *debug.BuildInfo
		override string
		want     Info
		text     string
	}{
		{"nothing recorded", nil, "", Info{Version: "dev"}, "dev"},
		{"working tree, no vcs", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "",
			Info{Version: "dev", GoVersion: "go1.26.8"}, "dev (go1.26.8)"},
		{"tagged module with vcs", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs}, "",
			Info{Version: "v1.2.3", Commit: "0123abcd", Time: "2026-12-01T10:00:00Z", Modified: true, GoVersion: "go1.26.8"},
			"v1.2.3 (commit 0123abcd, 2026-12-01T10:00:00Z, modified; go1.26.8)"},
		{"ldflags override wins", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs[:2]}, "v9.9.9",
			Info{Version: "v9.9.9", Commit: "0123abcd", GoVersion: "go1.26.8"}, "v9.9.9 (commit 0123abcd; go1.26.8)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromBuildInfo(tt.bi, tt.override)
			if got != tt.want {
				t.Errorf("FromBuildInfo = %+v, want %+v", got, tt.want)
			}
			if got.String() != tt.text {
				t.Errorf("String() = %q, want %q", got.String(), tt.text)
			}
		})
	}
}

func TestCollector(t *testing.T) {
	in := Info{Version: "v1.2.3", GoVersion: "go1.26.8"}
	want := `# HELP shoal_build_info Always 1; its labels name the build: module version, VCS commit and Go version.
# TYPE shoal_build_info gauge
shoal_build_info{commit="unknown",go_version="go1.26.8",version="v1.2.3"} 1
`
	if err := testutil.CollectAndCompare(Collector(in), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	in.Commit = "0123abcd"
	if err := testutil.CollectAndCompare(Collector(in), strings.NewReader(strings.Replace(want, "unknown", "0123abcd", 1))); err != nil {
		t.Fatal(err)
	}
}

func TestGathererServesTheRunningBuild(t *testing.T) {
	mfs, err := Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "shoal_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v", mfs)
	}
	labels := map[string]string{}
	for _, l := range mfs[0].GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if in := Read(); labels["version"] != in.Version || labels["go_version"] != in.GoVersion || in.GoVersion == "" {
		t.Errorf("labels %v, build %+v", labels, in)
	}
}
