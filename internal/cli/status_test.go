package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/client"
)

func TestPrintStatusShowsMaintenance(t *testing.T) {
	st := client.Status{App: "web", Release: 1, Desired: 1, Instances: []client.Instance{}}
	var off, on bytes.Buffer
	printStatus(&off, st)
	st.Maintenance = true
	printStatus(&on, st)
	if strings.Contains(off.String(), "maintenance") {
		t.Errorf("maintenance off, yet:\n%s", off.String())
	}
	if !strings.Contains(on.String(), "maintenance: on") {
		t.Errorf("maintenance on, not shown:\n%s", on.String())
	}
}

func TestPrintStatusShowsMoves(t *testing.T) {
	st := client.Status{App: "web", Release: 1, Desired: 1, InService: 1, Instances: []client.Instance{
		{ID: "web-1", Release: 1, State: api.InService, Reason: "healthy after 5ms", Moving: "off host h1 (draining)"},
		{ID: "web-2", Release: 1, State: api.Pending, Reason: "no capacity: an instance of web: h1: draining", Replaces: "web-1"},
	}}
	var b bytes.Buffer
	printStatus(&b, st)
	for _, want := range []string{"moving off host h1 (draining)", "no capacity: an instance of web: h1: draining"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
