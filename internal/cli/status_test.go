package cli

import (
	"bytes"
	"strings"
	"testing"

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
