package adminapi

import (
	"reflect"
	"testing"

	"github.com/shoal-dev/shoal/internal/api"
)

func TestGroupTiming(t *testing.T) {
	tm := func(n int64) *api.RequestTiming { return &api.RequestTiming{Requests: n} }
	bs := api.LBStatus{
		Routes: []api.RouteStatus{
			{Name: "web", Pool: "web", Timing: tm(10)},
			{Name: "web-api", Pool: "web", Timing: tm(5)},
			{Name: "idle", Pool: "web"}, // no request yet
			{Name: "other", Pool: "other", Timing: tm(7)},
		},
		Listeners: []api.ListenerStatus{
			{Name: "all", Timing: tm(22)},                             // carries every route
			{Name: "api", Routes: []string{"web-api"}, Timing: tm(5)}, // one of web's
			{Name: "theirs", Routes: []string{"other"}, Timing: tm(7)},
			{Name: "quiet", Routes: []string{"web"}},
		},
	}
	got := groupTiming(bs, "web")
	want := []api.TimingStatus{
		{Kind: "route", Name: "web", RequestTiming: *tm(10)},
		{Kind: "route", Name: "web-api", RequestTiming: *tm(5)},
		{Kind: "listener", Name: "all", RequestTiming: *tm(22)},
		{Kind: "listener", Name: "api", RequestTiming: *tm(5)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("groupTiming = %+v\nwant %+v", got, want)
	}
	if got := groupTiming(bs, "nobody"); got != nil {
		t.Errorf("an app without routes: %+v", got)
	}
}
