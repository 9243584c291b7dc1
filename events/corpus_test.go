package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

const corpusDir = "../../shared/testdata/sensu-examples"

// corpusUnwrapFailures are the corpus documents that cannot become a resource, with a
// fragment of the expected error. The keepalive_timeouts expression contains ": " unquoted,
// so YAML reads it as a mapping, which Sensu rejects too.
var corpusUnwrapFailures = map[string]string{
	"filters.yml#10": `spec.expressions: expected a string, got object (in YAML, quote a value that contains ": ")`,
}

// corpusInvalid are the corpus documents that decode but fail validation, with the fields
// Validate must name. They are snippets from the reference documentation, not complete
// resources.
var corpusInvalid = map[string][]string{
	"checks.yml#11":  {"interval"},     // ping-github-api: a secrets example with no schedule
	"entities.yml#6": {"entity_class"}, // spec is literally '...': '...'
	"entities.yml#8": {"entity_class"}, // idem
}

type corpusDoc struct {
	id   string
	w    Wrapped
	orig map[string]any // the document's spec as generic JSON
}

func loadCorpus(t *testing.T) []corpusDoc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.yml"))
	if err != nil || len(files) == 0 {
		t.Skipf("corpus %s not present", corpusDir)
	}
	var docs []corpusDoc
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ws, err := DecodeWrapped(bytes.NewReader(data), filepath.Base(f))
		if err != nil {
			t.Fatalf("decode %s: %v", f, err)
		}
		for i, w := range ws {
			docs = append(docs, corpusDoc{
				id:   fmt.Sprintf("%s#%d", filepath.Base(f), i+1),
				w:    w,
				orig: genericJSON(t, w.Spec),
			})
		}
	}
	return docs
}

func genericJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("generic decode %s: %v", b, err)
	}
	return m
}

// roundTrip sends r through Wrap → EncodeYAML → DecodeWrapped → Unwrap.
func roundTrip(t *testing.T, r Resource) (Resource, Wrapped) {
	t.Helper()
	w, err := Wrap(r)
	if err != nil {
		t.Fatalf("wrap: %v", err)
	}
	var buf bytes.Buffer
	if err := EncodeYAML(&buf, []Wrapped{w}); err != nil {
		t.Fatalf("encode: %v", err)
	}
	ws, err := DecodeWrapped(&buf, "roundtrip")
	if err != nil || len(ws) != 1 {
		t.Fatalf("decode again: %v (%d docs)\n%s", err, len(ws), buf.String())
	}
	back, err := Unwrap(ws[0])
	if err != nil {
		t.Fatalf("unwrap again: %v", err)
	}
	return back, ws[0]
}

func TestCorpus(t *testing.T) {
	docs := loadCorpus(t)
	var valid, invalid []string
	for _, d := range docs {
		t.Run(d.id, func(t *testing.T) {
			r, err := Unwrap(d.w)
			if want, ok := corpusUnwrapFailures[d.id]; ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Unwrap error = %v, want one containing %q", err, want)
				}
				invalid = append(invalid, fmt.Sprintf("%s (%s %s): %v", d.id, d.w.Type, d.w.Metadata.Name, err))
				return
			}
			if err != nil {
				t.Fatalf("Unwrap: %v", err)
			}

			// Fidelity first: nothing added, nothing lost.
			back, _ := roundTrip(t, r)
			got := genericJSON(t, mustJSON(t, back))
			delete(got, "metadata")
			if diffs := compareJSON("", d.orig, got, false); len(diffs) > 0 {
				t.Errorf("round trip lost fields:\n  %s", strings.Join(diffs, "\n  "))
			}
			if !reflect.DeepEqual(UnknownFields(r), UnknownFields(back)) {
				t.Errorf("unknown fields %v came back as %v", UnknownFields(r), UnknownFields(back))
			}

			// Then as create -f treats it: defaults, validation, and the trip again.
			SetDefaults(r, "")
			if k, _ := KindOf(r); k.Namespaced && r.Meta().Namespace == "" {
				t.Errorf("namespace not defaulted")
			}
			back, bw := roundTrip(t, r)
			got = genericJSON(t, mustJSON(t, back))
			delete(got, "metadata")
			if diffs := compareJSON("", d.orig, got, true); len(diffs) > 0 {
				t.Errorf("round trip after SetDefaults lost fields:\n  %s", strings.Join(diffs, "\n  "))
			}
			wantMeta := d.w.Metadata
			if d.w.Type == "Silenced" {
				wantMeta.Name = bw.Metadata.Name // derived from subscription and check
			}
			if wantMeta.Namespace == "" {
				wantMeta.Namespace = bw.Metadata.Namespace
			}
			if !reflect.DeepEqual(wantMeta, bw.Metadata) {
				t.Errorf("metadata = %+v, want %+v", bw.Metadata, wantMeta)
			}

			err = r.Validate()
			var fields []string
			if err != nil {
				var ve ValidationError
				if !asValidationError(err, &ve) {
					t.Fatalf("Validate returned %T, want ValidationError", err)
				}
				for _, fe := range ve {
					fields = append(fields, fe.Field)
				}
				invalid = append(invalid, fmt.Sprintf("%s (%s %s): %v", d.id, d.w.Type, d.w.Metadata.Name, err))
			} else {
				valid = append(valid, d.id)
			}
			if want := corpusInvalid[d.id]; !reflect.DeepEqual(fields, want) {
				t.Errorf("Validate fields = %v, want %v (err: %v)", fields, want, err)
			}
			if unk := UnknownFields(r); len(unk) > 0 {
				t.Logf("%s: unknown fields kept as is: %v", d.id, unk)
			}
		})
	}
	sort.Strings(invalid)
	t.Logf("%d corpus documents validate", len(valid))
	for _, s := range invalid {
		t.Logf("rejected: %s", s)
	}
}

func asValidationError(err error, ve *ValidationError) bool {
	v, ok := err.(ValidationError)
	*ve = v
	return ok
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return b
}

// compareJSON lists where got does not carry orig's values. null equals an empty list, an
// empty map or a zero scalar; a key missing from got is fine when orig's value is such a
// zero. With zeroMatchesAny, a zero in orig may also have become anything (a default).
func compareJSON(path string, orig, got any, zeroMatchesAny bool) []string {
	if isZeroJSON(orig) && (zeroMatchesAny || isZeroJSON(got)) {
		return nil
	}
	switch o := orig.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, orig)}
		}
		var diffs []string
		keys := make([]string, 0, len(o))
		for k := range o {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			diffs = append(diffs, compareJSON(p, o[k], g[k], zeroMatchesAny)...)
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(o) {
			if zeroMatchesAny && ok && len(g) > len(o) {
				// A default may extend a list (an entity's own subscription): orig must be
				// a prefix.
				g = g[:len(o)]
			} else {
				return []string{fmt.Sprintf("%s: got %v, want %v", path, got, orig)}
			}
		}
		var diffs []string
		for i := range o {
			diffs = append(diffs, compareJSON(fmt.Sprintf("%s[%d]", path, i), o[i], g[i], zeroMatchesAny)...)
		}
		return diffs
	case json.Number:
		g, ok := got.(json.Number)
		if !ok || !sameNumber(o, g) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, orig)}
		}
		return nil
	}
	if !reflect.DeepEqual(orig, got) {
		return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, orig)}
	}
	return nil
}

func sameNumber(a, b json.Number) bool {
	x, _, err1 := big.ParseFloat(string(a), 10, 256, big.ToNearestEven)
	y, _, err2 := big.ParseFloat(string(b), 10, 256, big.ToNearestEven)
	return err1 == nil && err2 == nil && x.Cmp(y) == 0
}

func isZeroJSON(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case bool:
		return !t
	case json.Number:
		return sameNumber(t, "0")
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}
