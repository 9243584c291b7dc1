package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// APIVersion is the only api_version Picket serves.
const APIVersion = "core/v2"

// Wrapped is a resource in the format of `create -f` and `dump`: its type, API version and
// metadata beside its spec.
type Wrapped struct {
	Type       string          `json:"type"`
	APIVersion string          `json:"api_version"`
	Metadata   ObjectMeta      `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
	// Doc is the document's number in its input (from 1), as DecodeWrapped read it;
	// documents that did not decode leave gaps.
	Doc int `json:"-" yaml:"-"`
}

// wireMeta is ObjectMeta as the wrapped format writes it: nothing empty, not even the name
// (events have none).
type wireMeta struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	CreatedBy   string            `json:"created_by,omitempty"`
}

// MarshalJSON writes the wrapper with type, api_version, metadata and spec in that order,
// leaving empty metadata fields out.
func (w Wrapped) MarshalJSON() ([]byte, error) {
	spec := w.Spec
	if len(bytes.TrimSpace(spec)) == 0 {
		spec = json.RawMessage("{}")
	}
	return encodeJSON(struct {
		Type       string          `json:"type"`
		APIVersion string          `json:"api_version"`
		Metadata   wireMeta        `json:"metadata"`
		Spec       json.RawMessage `json:"spec"`
	}{w.Type, w.APIVersion, wireMeta(w.Metadata), spec})
}

// DecodeWrapped reads wrapped resources from r: YAML documents separated by `---`, or
// concatenated JSON objects when the input starts with `{`. Type names are trimmed and
// normalised to their canonical spelling; api_version defaults to core/v2. Errors name
// source and the 1-based document number. Documents that decode are returned even when
// others fail; callers applying them should stop on any error.
func DecodeWrapped(r io.Reader, source string) ([]Wrapped, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", source, err)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return decodeJSONDocs(data, source)
	}
	return decodeYAMLDocs(data, source)
}

func decodeJSONDocs(data []byte, source string) ([]Wrapped, error) {
	var out []Wrapped
	var errs []error
	base := 0 // where in data the decoder's input starts
	lines := lineCounter{data: data, line: 1}
	dec := json.NewDecoder(bytes.NewReader(data))
	for n := 1; ; n++ {
		start := base + int(dec.InputOffset())
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			break
		}
		for start < len(data) && strings.IndexByte(" \t\r\n", data[start]) >= 0 {
			start++
		}
		where := fmt.Sprintf("%s: document %d (line %d)", source, n, lines.at(start))
		if err != nil {
			// Resume at the next line that starts with "{": a document begins there in
			// the wrapped format as picket dump and sensuctl dump write it, and nowhere
			// else in valid JSON (a string holds no raw line break).
			at := start + 1
			var se *json.SyntaxError
			if errors.As(err, &se) {
				at = max(at, base+int(se.Offset))
			}
			next := -1
			if at < len(data) {
				next = bytes.Index(data[at:], []byte("\n{"))
			}
			if next < 0 {
				errs = append(errs, fmt.Errorf("%s: invalid JSON: %v (nothing after it was read: no later line starts with '{')", where, err))
				break
			}
			base = at + next + 1
			errs = append(errs, fmt.Errorf("%s: invalid JSON: %v; reading resumes at line %d, the next line that starts with '{'", where, err, lines.at(base)))
			dec = json.NewDecoder(bytes.NewReader(data[base:]))
			continue
		}
		out, errs = appendWrapped(out, errs, raw, n, where)
	}
	return out, errors.Join(errs...)
}

// lineCounter numbers the lines of data at offsets that grow, counting each line
// break once however many documents a file holds.
type lineCounter struct {
	data      []byte
	off, line int // line is the 1-based number of the line holding data[off]
}

func (c *lineCounter) at(off int) int {
	off = min(off, len(c.data))
	if off < c.off {
		c.off, c.line = 0, 1
	}
	c.line += bytes.Count(c.data[c.off:off], []byte("\n"))
	c.off = off
	return c.line
}

// appendWrapped adds the wrapped document raw, number n of its input and described by
// where, to out, or what is wrong with it to errs.
func appendWrapped(out []Wrapped, errs []error, raw []byte, n int, where string) ([]Wrapped, []error) {
	w, err := wrappedFromJSON(raw)
	if err != nil {
		return out, append(errs, fmt.Errorf("%s: %w", where, err))
	}
	w.Doc = n
	return append(out, w), errs
}

func decodeYAMLDocs(data []byte, source string) ([]Wrapped, error) {
	var out []Wrapped
	var errs []error
	n := 0
	// Each part is decoded on its own, so that a syntax error in one document does not
	// hide the problems of the documents after it.
	for _, part := range yamlParts(data) {
		dec := yaml.NewDecoder(bytes.NewReader(part.data))
		for {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if err == io.EOF {
				break
			}
			n++
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: document %d: invalid YAML: %s", source, n, shiftYAMLLines(err.Error(), part.line-1)))
				break // the rest of this part; the next part is read afresh
			}
			if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
				continue // an empty document, e.g. after a trailing ---
			}
			where := fmt.Sprintf("%s: document %d (line %d)", source, n, doc.Content[0].Line+part.line-1)
			var v any
			if err := doc.Decode(&v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s", where, shiftYAMLLines(err.Error(), part.line-1)))
				continue
			}
			raw, err := json.Marshal(yamlToJSONValue(v))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: cannot be represented as JSON: %v", where, err))
				continue
			}
			out, errs = appendWrapped(out, errs, raw, n, where)
		}
	}
	return out, errors.Join(errs...)
}

// yamlPart is a run of a YAML stream's lines, from its line number line (1-based).
type yamlPart struct {
	data []byte
	line int
}

// yamlParts splits a YAML stream at its document markers: a part begins at each line
// starting "---" (with the comments and directives just before it) and ends after each
// line starting "...", either followed by a space, a tab or the line's end. YAML
// reserves such lines for markers wherever they appear, even inside a block scalar, so
// the parts hold whole documents.
func yamlParts(data []byte) []yamlPart {
	var parts []yamlPart
	start, startLine := 0, 1
	cut := func(end, nextLine int) {
		if end > start {
			parts = append(parts, yamlPart{data[start:end], startLine})
		}
		start, startLine = end, nextLine
	}
	for off, line := 0, 1; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		text := data[off:next]
		switch {
		case isYAMLMarker(text, "---") && !yamlPrologue(data[start:off]):
			cut(off, line)
		case isYAMLMarker(text, "..."):
			cut(next, line+1)
		}
		off = next
	}
	cut(len(data), 0)
	return parts
}

// yamlPrologue reports whether lines hold nothing but blank lines, comments and
// directives (%YAML, %TAG), which belong with the document that follows them.
func yamlPrologue(lines []byte) bool {
	for _, l := range bytes.Split(lines, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && l[0] != '%' {
			return false
		}
	}
	return true
}

func isYAMLMarker(line []byte, marker string) bool {
	if !bytes.HasPrefix(line, []byte(marker)) {
		return false
	}
	rest := line[len(marker):]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r' || rest[0] == '\n'
}

// yamlLine matches the line numbers in yaml.v3's errors: "yaml: line 3: …" and, in
// its unmarshal errors, "\n  line 3: …".
var yamlLine = regexp.MustCompile(`(yaml: line |\n  line )(\d+)`)

// shiftYAMLLines adds by to the line numbers of a yaml.v3 error about a part of a
// stream, so that they count from the stream's start.
func shiftYAMLLines(msg string, by int) string {
	if by == 0 {
		return msg
	}
	return yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		sub := yamlLine.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[2])
		return sub[1] + strconv.Itoa(n+by)
	})
}

// yamlToJSONValue turns what yaml.v3 decodes into values encoding/json accepts: mappings
// with non-string keys get their keys spelled out.
func yamlToJSONValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = yamlToJSONValue(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = yamlToJSONValue(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = yamlToJSONValue(e)
		}
		return t
	}
	return v
}

// wrappedFromJSON checks one document's wrapper and splits it into a Wrapped.
func wrappedFromJSON(raw []byte) (Wrapped, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return Wrapped{}, errors.New("expected a mapping with type, api_version, metadata and spec")
	}
	var w Wrapped
	var unknown []string
	for k := range top {
		switch k {
		case "type", "api_version", "metadata", "spec":
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return w, fmt.Errorf("unknown key(s) %s beside type, api_version, metadata and spec; move them into spec", strings.Join(unknown, ", "))
	}

	var typ string
	if t, ok := top["type"]; !ok || string(t) == "null" {
		return w, fmt.Errorf("missing type; set type to one of %s", strings.Join(typeNames(), ", "))
	} else if err := json.Unmarshal(t, &typ); err != nil {
		return w, fmt.Errorf("type must be a string such as CheckConfig, got %s", t)
	}
	k, ok := LookupKind(typ)
	if !ok {
		return w, fmt.Errorf("unknown type %q; valid types are %s", strings.TrimSpace(typ), strings.Join(typeNames(), ", "))
	}
	w.Type = k.Type

	w.APIVersion = APIVersion
	if a, ok := top["api_version"]; ok && string(a) != "null" {
		var av string
		if err := json.Unmarshal(a, &av); err != nil {
			return w, fmt.Errorf("api_version must be a string such as %s, got %s", APIVersion, a)
		}
		if av = strings.TrimSpace(av); av != "" {
			w.APIVersion = av
		}
	}

	if m, ok := top["metadata"]; ok && string(m) != "null" {
		dec := json.NewDecoder(bytes.NewReader(m))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w.Metadata); err != nil {
			return w, fmt.Errorf("metadata: %v (metadata holds name, namespace, labels, annotations and created_by)", describeJSONError("", err))
		}
	}

	w.Spec = json.RawMessage("{}")
	if s, ok := top["spec"]; ok && string(s) != "null" {
		if len(s) == 0 || s[0] != '{' {
			return w, fmt.Errorf("spec must be a mapping, got %s", s)
		}
		w.Spec = s
	}
	return w, nil
}

// Unwrap turns a wrapped resource into a typed one, merging the wrapper's metadata into
// it. An unknown type, an api_version other than core/v2, a spec that does not decode, or
// metadata that contradicts the spec's is an error.
func Unwrap(w Wrapped) (Resource, error) {
	typ := strings.TrimSpace(w.Type)
	k, ok := LookupKind(typ)
	if !ok {
		return nil, fmt.Errorf("unknown type %q; valid types are %s", typ, strings.Join(typeNames(), ", "))
	}
	if av := strings.TrimSpace(w.APIVersion); av != "" && av != APIVersion {
		return nil, fmt.Errorf("%s %s: api_version %q is not supported; Picket serves %s only", k.Type, w.Metadata.Name, av, APIVersion)
	}
	r := k.New()
	if len(bytes.TrimSpace(w.Spec)) > 0 {
		if err := json.Unmarshal(w.Spec, r); err != nil {
			return nil, fmt.Errorf("%s %s: %w", k.Type, w.Metadata.Name, describeJSONError("spec", err))
		}
	}
	m := r.Meta()
	for _, f := range []struct {
		field     string
		dst       *string
		src       string
		specField string
	}{
		{"name", &m.Name, w.Metadata.Name, "metadata.name"},
		{"namespace", &m.Namespace, w.Metadata.Namespace, "metadata.namespace"},
		{"created_by", &m.CreatedBy, w.Metadata.CreatedBy, "metadata.created_by"},
	} {
		switch {
		case f.src == "":
		case *f.dst == "":
			*f.dst = f.src
		case *f.dst != f.src:
			if _, flat := r.(interface{ sync() }); flat && f.field == "name" {
				f.specField = "the spec's name"
			}
			return nil, fmt.Errorf("%s %s: metadata.%s %q differs from %s %q; give it once", k.Type, w.Metadata.Name, f.field, f.src, f.specField, *f.dst)
		}
	}
	m.Labels = mergeStrings(m.Labels, w.Metadata.Labels)
	m.Annotations = mergeStrings(m.Annotations, w.Metadata.Annotations)
	if s, ok := r.(interface{ sync() }); ok {
		s.sync()
	}
	return r, nil
}

func mergeStrings(dst, src map[string]string) map[string]string {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]string, len(src))
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// Wrap turns a resource into the wrapped format, moving its metadata out of the spec.
// Namespaces and users have no metadata of their own; their wrapper carries only the name,
// as sensuctl dump writes them.
func Wrap(r Resource) (Wrapped, error) {
	k, ok := KindOf(r)
	if !ok {
		return Wrapped{}, fmt.Errorf("wrap %T: not a registered resource type", r)
	}
	w := Wrapped{Type: k.Type, APIVersion: APIVersion}
	b, err := encodeJSON(r)
	if err != nil {
		return Wrapped{}, fmt.Errorf("wrap %s %s: %w", k.Type, StoreName(r), err)
	}
	if _, flat := r.(interface{ sync() }); flat {
		w.Metadata = ObjectMeta{Name: r.Meta().Name}
		w.Spec = b
		return w, nil
	}
	w.Metadata = *r.Meta()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return Wrapped{}, fmt.Errorf("wrap %s %s: %w", k.Type, StoreName(r), err)
	}
	delete(fields, "metadata")
	if w.Spec, err = encodeJSON(fields); err != nil {
		return Wrapped{}, fmt.Errorf("wrap %s %s: %w", k.Type, StoreName(r), err)
	}
	return w, nil
}

// EncodeJSON writes items as concatenated, indented JSON objects, one per resource.
func EncodeJSON(w io.Writer, items []Wrapped) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return fmt.Errorf("encode %s %s: %w", it.Type, it.Metadata.Name, err)
		}
	}
	return nil
}

// EncodeYAML writes items as YAML documents separated by `---`: type, api_version,
// metadata and spec in that order, and every mapping inside with its keys sorted, as
// sensuctl dump does.
func EncodeYAML(w io.Writer, items []Wrapped) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	for _, it := range items {
		doc, err := wrappedNode(it)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", it.Type, it.Metadata.Name, err)
		}
		if err := enc.Encode(doc); err != nil {
			return fmt.Errorf("encode %s %s: %w", it.Type, it.Metadata.Name, err)
		}
	}
	return enc.Close()
}

func wrappedNode(it Wrapped) (*yaml.Node, error) {
	b, err := it.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, err
	}
	doc := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, key := range []string{"type", "api_version", "metadata", "spec"} {
		dec := json.NewDecoder(bytes.NewReader(top[key]))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		val, err := valueNode(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		doc.Content = append(doc.Content, stringNode(key), val)
	}
	return doc, nil
}

func stringNode(s string) *yaml.Node {
	n := &yaml.Node{}
	_ = n.Encode(s) // encoding a string cannot fail
	return n
}

// valueNode builds a YAML node from a JSON value decoded with UseNumber, sorting mapping
// keys so output is stable.
func valueNode(v any) (*yaml.Node, error) {
	switch t := v.(type) {
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			val, err := valueNode(t[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			n.Content = append(n.Content, stringNode(k), val)
		}
		return n, nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for i, e := range t {
			val, err := valueNode(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			n.Content = append(n.Content, val)
		}
		return n, nil
	case json.Number:
		n := &yaml.Node{}
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return n, n.Encode(i)
		}
		if u, err := strconv.ParseUint(string(t), 10, 64); err == nil {
			return n, n.Encode(u)
		}
		f, err := t.Float64()
		if err != nil {
			return nil, err
		}
		return n, n.Encode(f)
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	default:
		n := &yaml.Node{}
		return n, n.Encode(t)
	}
}
