package dashboard

import (
	"html/template"
	"strings"
)

// Icons are 16x16 inline SVG shapes. Every state has its own shape as well
// as its own colour, and its name is printed next to it, so no state is
// told by colour alone.
const (
	outline = `<circle cx="8" cy="8" r="6.2" fill="none" stroke="currentColor" stroke-width="1.6"/>`
	white   = `stroke="#fff" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" fill="none"`
)

var icons = map[string]string{
	"ok":       `<circle cx="8" cy="8" r="7"/><path d="M4.6 8.3l2.2 2.2 4.6-4.8" ` + white + `/>`,
	"warn":     `<path d="M8 1.2 15.3 14.3H.7z"/><path d="M8 6v3.8" ` + white + `/><circle cx="8" cy="12" r="1" fill="#fff"/>`,
	"fail":     `<circle cx="8" cy="8" r="7"/><path d="M5.5 5.5l5 5m0-5-5 5" ` + white + `/>`,
	"half":     outline + `<path d="M8 1.8a6.2 6.2 0 0 0 0 12.4z"/>`,
	"pending":  `<circle cx="8" cy="8" r="6.2" fill="none" stroke="currentColor" stroke-width="1.6" stroke-dasharray="2.4 2.1"/>`,
	"drain":    outline + `<path d="M8 4.4v6.4M5.4 8.3 8 10.9l2.6-2.6" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round"/>`,
	"stop":     `<rect x="2.5" y="2.5" width="11" height="11" rx="1.6"/>`,
	"eject":    outline + `<path d="M3.7 12.3 12.3 3.7" stroke="currentColor" stroke-width="1.6"/>`,
	"dot":      `<circle cx="8" cy="8" r="3.2"/>`,
	"deploy":   `<path d="M8 1.5 13 7H10v5H6V7H3z"/><rect x="3" y="13" width="10" height="1.8" rx=".6"/>`,
	"scale":    `<path d="M8 .8 12 5H4zM8 15.2 4 11h8z"/><rect x="6.8" y="5" width="2.4" height="6"/>`,
	"replace":  `<path d="M13.2 6.2A5.4 5.4 0 0 0 3.3 5M2.8 9.8a5.4 5.4 0 0 0 9.9 1.2" fill="none" stroke="currentColor" stroke-width="1.7" stroke-linecap="round"/><path d="M2 1.8v4.4h4.4zM14 14.2V9.8H9.6z"/>`,
	"health":   `<path d="M1 8.5h3.2l1.6-4 2.6 8 2-5.5 1.1 1.5H15" fill="none" stroke="currentColor" stroke-width="1.7" stroke-linecap="round" stroke-linejoin="round"/>`,
	"live":     `<circle cx="8" cy="8" r="4"/><circle cx="8" cy="8" r="6.8" fill="none" stroke="currentColor" stroke-width="1.2"/>`,
	"rollback": `<path d="M6 2.5 1.8 6.5 6 10.5V8h3.5a2.8 2.8 0 0 1 0 5.6H7v1.9h2.5a4.7 4.7 0 0 0 0-9.4H6z"/>`,
	"host":     `<rect x="1.5" y="2" width="13" height="5" rx="1.2"/><rect x="1.5" y="9" width="13" height="5" rx="1.2"/><circle cx="4.4" cy="4.5" r=".9" fill="#fff"/><circle cx="4.4" cy="11.5" r=".9" fill="#fff"/>`,
}

// icon returns the named icon as inline SVG, hidden from screen readers
// (the text next to it says the same).
func icon(name string) template.HTML {
	body, ok := icons[name]
	if !ok {
		body = icons["dot"]
	}
	return template.HTML(`<svg class="icon" viewBox="0 0 16 16" width="16" height="16" fill="currentColor" aria-hidden="true" focusable="false">` + body + `</svg>`)
}

// stateLook maps a state (instance, target, release, deploy or host) to
// its icon and its tone class.
var stateLook = map[string][2]string{
	StateInService: {"ok", "good"},
	"healthy":      {"ok", "good"},
	"passing":      {"ok", "good"},
	"current":      {"ok", "good"},
	"done":         {"ok", "good"},
	StateStarting:  {"half", "busy"},
	"deploying":    {"half", "busy"},
	StatePending:   {"pending", "busy"},
	StateDraining:  {"drain", "muted"},
	"previous":     {"dot", "muted"},
	StateStopped:   {"stop", "muted"},
	StateUnhealthy: {"warn", "warn"},
	"ejected":      {"eject", "warn"},
	StateFailed:    {"fail", "bad"},
	"rolled_back":  {"rollback", "warn"},
	// A fleet's hosts (api.HostState); draining is the instances' look.
	"ready":       {"ok", "good"},
	"joining":     {"pending", "busy"},
	"unreachable": {"fail", "bad"},
}

// stateTag renders a state as icon + words in a tag; the data-state
// attribute carries the raw value for scripts and tests.
func stateTag(state string) template.HTML {
	look, ok := stateLook[state]
	if !ok {
		look = [2]string{"dot", "muted"}
	}
	text := strings.ReplaceAll(state, "_", " ")
	return template.HTML(`<span class="tag tone-` + look[1] + `" data-state="` + template.HTMLEscapeString(state) + `">` +
		string(icon(look[0])) + `<span>` + template.HTMLEscapeString(text) + `</span></span>`)
}
