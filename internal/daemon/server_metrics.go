package daemon

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-dev/shoal/internal/api"
)

// The server's /metrics: the balancer's series and the build info
// (adminapi.LBRoutes), then, gathered at each scrape, every app's
// controller series with an app label and the fleet's. Labels are
// bounded: app (the apps deployed), state (the four host states).

// metrics is what GET /metrics adds to the balancer's series.
func (s *Server) metrics() prometheus.Gatherer {
	fleet := prometheus.NewRegistry()
	fleet.MustRegister(fleetCollector{s})
	return prometheus.Gatherers{fleet, prometheus.GathererFunc(s.gatherApps)}

}

// gatherApps gathers every app's controller series, each with the label
// app="<name>", and the fleet event writer's event series with
// app="@fleet" (api.FleetEventsApp), merged by name
// (prometheus.Gatherers checks that they agree).
func (s *Server) gatherApps() ([]*dto.MetricFamily, error) {
	s.appsMu.Lock()
	apps := s.sortedAppsLocked()
	s.appsMu.Unlock()
	gs := prometheus.Gatherers{labelled{g: s.fleetEvents.Metrics(), name: "app", value: api.FleetEventsApp}}
	for _, a := range apps {
		gs = append(gs, labelled{g: a.ctl.Metrics(), name: "app", value: a.name})
	}
	return gs.Gather()
}

// labelled is a Gatherer that adds the label name=value to every metric
// of g.
type labelled struct {
	g           prometheus.Gatherer
	name, value string
}

// Gather implements prometheus.Gatherer.
func (l labelled) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := l.g.Gather()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", l.name, l.value, err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			if slices.ContainsFunc(m.Label, func(lp *dto.LabelPair) bool { return lp.GetName() == l.name }) {
				return nil, fmt.Errorf("%s %s: metric %s has a label %s already", l.name, l.value, mf.GetName(), l.name)
			}
			name, value := l.name, l.value
			m.Label = append(m.Label, &dto.LabelPair{Name: &name, Value: &value})
			slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
	}
	return mfs, nil
}

var (
	fleetHostsDesc = prometheus.NewDesc("shoal_fleet_hosts",
		"Hosts of the fleet by state (joining, ready, draining, unreachable).", []string{"state"}, nil)
	fleetInstancesDesc = prometheus.NewDesc("shoal_fleet_instances",
		"Instances placed on the fleet's hosts (starting ones included).", nil, nil)
)

// fleetCollector reports the fleet's hosts and instances from
// fleet.Status at each scrape.
type fleetCollector struct{ s *Server }

// Describe implements prometheus.Collector.
func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fleetHostsDesc
	ch <- fleetInstancesDesc
}

// Collect implements prometheus.Collector.
func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	byState := map[api.HostState]int{api.HostJoining: 0, api.HostReady: 0, api.HostDraining: 0, api.HostUnreachable: 0}
	instances := 0
	for _, h := range c.s.hostStatus() {
		byState[h.State]++
		instances += h.Instances
	}
	for st, n := range byState {
		ch <- prometheus.MustNewConstMetric(fleetHostsDesc, prometheus.GaugeValue, float64(n), string(st))
	}
	ch <- prometheus.MustNewConstMetric(fleetInstancesDesc, prometheus.GaugeValue, float64(instances))
}
