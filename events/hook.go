package events

import (
	"encoding/json"
	"net/url"
	"regexp"
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
