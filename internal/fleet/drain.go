package fleet

import (
	"slices"
	"strings"

	"github.com/shoal-dev/shoal/internal/controller"
)

// Moving instances off a draining host. The fleet does not move anything
// itself: it tells each app's controller, through the app's Host (a
// controller.Evacuator), which of its instances are on a draining host,
// and the controller replaces them launch first (controller/evacuate.go);
// placement keeps the replacements off the host. An evacuation of a host
// names every instance of the app there, so telling again is harmless;
// the fleet tells:
//
//   - when the host starts draining (Drain), and an empty one to every
//     app when it stops (Undrain): nothing moves back;
//   - when the host is synced (listed and swept) while draining: after a
//     restart of the server, the stored draining flag and the listed
//     instances are enough to finish emptying the host;
//   - when an app's Host is first asked for, for the draining hosts
//     already synced.
//
// Evacuations are pushed with the registry locked, so that they reach a
// controller in the order of the changes they describe.

// evacuationReason is the Evacuation.Reason of a draining host.
const evacuationReason = "draining"

// hostEvacuationsLocked pushes the evacuation of h to the apps' views: the
// instances of each app on h while it drains (apps without any are not
// told), an empty one to every app when it does not.
func (f *Fleet) hostEvacuationsLocked(h *host) {
	byApp := map[string][]string{}
	if h.rec.Draining {
		for id, p := range h.instances {
			if !p.ended {
				byApp[p.app] = append(byApp[p.app], id)
			}
		}
	} else {
		for app := range f.views {
			byApp[app] = nil
		}
	}
	apps := make([]string, 0, len(byApp))
	for app := range byApp {
		apps = append(apps, app)
	}
	slices.Sort(apps)
	for _, app := range apps {
		v := f.views[app]
		if v == nil {
			continue // told when its Host is asked for
		}
		ids := byApp[app]
		slices.Sort(ids)
		v.evacuations.push(controller.Evacuation{Host: h.rec.Name, IDs: ids, Reason: evacuationReason})
	}
}

// appEvacuationsLocked pushes to v the evacuation of every synced
// draining host where v's app has instances.
func (f *Fleet) appEvacuationsLocked(v *view) {
	names := make([]string, 0, len(f.hosts))
	for name := range f.hosts {
		names = append(names, name)
	}
	slices.SortFunc(names, strings.Compare)
	for _, name := range names {
		h := f.hosts[name]
		if !h.rec.Draining || !h.synced {
			continue
		}
		var ids []string
		for id, p := range h.instances {
			if p.app == v.app && !p.ended {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			continue
		}
		slices.Sort(ids)
		v.evacuations.push(controller.Evacuation{Host: name, IDs: ids, Reason: evacuationReason})
	}
}
