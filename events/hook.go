package events

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
)

// HookConfig is a command run after a check, depending on the check's status.
type HookConfig struct {
	Metadata      ObjectMeta `json:"metadata"`
	Command       string     `json:"command"`
	Timeout       int64      `json:"timeout"`
	Stdin         bool       `json:"stdin"`
	RuntimeAssets []string   `json:"runtime_assets,omitempty"`

	extra map[string]json.RawMessage
}

// Hook is a hook as it ran for a check in an event: its definition plus the result.
type Hook struct {
	HookConfig

	Duration float64 `json:"duration,omitempty"`
	Executed int64   `json:"executed"`
	Issued   int64   `json:"issued"`
	Output   string  `json:"output"`
	Status   int32   `json:"status"`

	extra map[string]json.RawMessage
}

// Meta returns the hook's metadata.
func (h *HookConfig) Meta() *ObjectMeta { return &h.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (h HookConfig) MarshalJSON() ([]byte, error) { return marshalKeeping(&h, h.extra) }

// UnmarshalJSON reads a hook and keeps keys it does not know.
func (h *HookConfig) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, h)
	h.extra = extra
	return err
}

// Validate reports every problem with the hook.
func (h *HookConfig) Validate() error {
	var p problems
	p.meta("", h.Metadata)
	if h.Command == "" {
		p.add("command", "required; set the command the agent runs")
	}
	p.nonNegative("timeout", h.Timeout)
	return p.err()
}

// MarshalJSON writes the hook and its result, including unknown fields read earlier.
func (h Hook) MarshalJSON() ([]byte, error) { return marshalKeeping(&h, h.extra) }

// UnmarshalJSON reads a hook result and keeps keys it does not know.
func (h *Hook) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, h)
	h.extra = extra
	return err
}

// Asset is a downloadable archive that checks, handlers and mutators may use at runtime.
type Asset struct {
	Metadata ObjectMeta        `json:"metadata"`
	URL      string            `json:"url,omitempty"`
	Sha512   string            `json:"sha512,omitempty"`
	Filters  []string          `json:"filters"`
	Headers  map[string]string `json:"headers,omitempty"`
	// Builds is kept as given: Picket does not fetch multi-build assets itself.
	Builds json.RawMessage `json:"builds,omitempty"`

	extra map[string]json.RawMessage
}

var sha512RE = regexp.MustCompile(`^[0-9a-fA-F]{128}$`)

// Meta returns the asset's metadata.
func (a *Asset) Meta() *ObjectMeta { return &a.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (a Asset) MarshalJSON() ([]byte, error) { return marshalKeeping(&a, a.extra) }

// UnmarshalJSON reads an asset and keeps keys it does not know.
func (a *Asset) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, a)
	a.extra = extra
	return err
}

// Validate reports every problem with the asset. An asset with builds carries its URLs
// there; otherwise it needs a URL and the archive's SHA-512.
func (a *Asset) Validate() error {
	var p problems
	p.meta("", a.Metadata)
	hasBuilds := len(a.Builds) > 0 && string(a.Builds) != "null" && string(a.Builds) != "[]"
	if !hasBuilds {
		if a.URL == "" {
			p.add("url", "required; set the URL of the asset archive (or give builds)")
		} else if u, err := url.Parse(a.URL); err != nil || u.Scheme == "" || u.Host == "" {
			p.add("url", "%q is not an absolute URL; use e.g. https://example.com/asset.tar.gz", a.URL)
		}
		if !sha512RE.MatchString(a.Sha512) {
			p.add("sha512", "must be the archive's SHA-512 as 128 hex digits (got %d characters)", len(a.Sha512))
		}
	}
	return p.err()
}

// hookStatusNames are the names a check_hooks key may give a status, as in Sensu.
var hookStatusNames = map[string]uint32{"ok": 0, "warning": 1, "critical": 2, "unknown": 3}

// parseHookKey reads a check_hooks key: a status (0–255), a status name (ok, warning,
// critical, unknown), or "non-zero"; ok is false for anything else.
func parseHookKey(key string) (status uint32, nonZero, ok bool) {
	if key == "non-zero" {
		return 0, true, true
	}
	if s, found := hookStatusNames[key]; found {
		return s, false, true
	}
	n, err := strconv.ParseUint(key, 10, 8)
	return uint32(n), false, err == nil
}

// hookKeyMatches reports whether a check_hooks key selects a result of status.
func hookKeyMatches(key string, status uint32) bool {
	s, nonZero, ok := parseHookKey(key)
	return ok && (nonZero && status != 0 || !nonZero && s == status)
}

// validHookKey reports whether key is one hookKeyMatches understands.
func validHookKey(key string) bool {
	_, _, ok := parseHookKey(key)
	return ok
}

// HookNames lists the hooks a check's check_hooks run after a result of status, each
// once, in the order check_hooks lists them (keys of one entry in sorted order).
func HookNames(checkHooks []map[string][]string, status uint32) []string {
	return hookNames(checkHooks, func(key string) bool { return hookKeyMatches(key, status) })
}

// AllHookNames lists every hook a check's check_hooks name, whatever the status, each
// once, in the order of HookNames.
func AllHookNames(checkHooks []map[string][]string) []string {
	return hookNames(checkHooks, func(string) bool { return true })
}

func hookNames(checkHooks []map[string][]string, match func(key string) bool) []string {
	var names []string
	for _, entry := range checkHooks {
		for _, k := range slices.Sorted(maps.Keys(entry)) {
			if !match(k) {
				continue
			}
			for _, h := range entry[k] {
				if !slices.Contains(names, h) {
					names = append(names, h)
				}
			}
		}
	}
	return names
}

// validateCheckHooks adds a problem for every check_hooks key that selects no status and
// every hook name that is not a valid name.
func validateCheckHooks(p *problems, checkHooks []map[string][]string) {
	for i, entry := range checkHooks {
		for _, k := range slices.Sorted(maps.Keys(entry)) {
			field := fmt.Sprintf("check_hooks[%d].%s", i, k)
			if !validHookKey(k) {
				p.add(field, "%q is not a status: use 0 to 255, ok, warning, critical, unknown or non-zero", k)
			}
			for j, h := range entry[k] {
				if !nameRE.MatchString(h) {
					p.add(fmt.Sprintf("%s[%d]", field, j), "%q is not a valid hook name; use only letters, digits, '_', '.', '-' or ':'", h)
				}
			}
		}
	}
}
