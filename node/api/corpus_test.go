package api_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/nodetest"
)

const corpusDir = "../../../shared/testdata/sensu-examples"

// TestCorpusThroughAPI stores every published example through the REST API and reads
// it back: valid documents keep every field they had; invalid ones get a 400 naming the
// same fields Validate names.
func TestCorpusThroughAPI(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.yml"))
	if len(files) == 0 {
		t.Skip("conformance corpus not present at " + corpusDir)
	}
	n := sharedNode(t)
	c, _ := login(t, n.URL, nodetest.AdminUser, nodetest.AdminPassword)
	stored, rejected := 0, 0
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := events.DecodeWrapped(f, filepath.Base(file))
		f.Close()
		if err != nil {
			// DecodeWrapped returns the documents that decoded alongside the errors.
			t.Logf("%s: %v", filepath.Base(file), err)
		}
		for i, w := range docs {
			res, err := events.Unwrap(w)
			if err != nil {
				t.Logf("%s #%d: not a resource: %v", filepath.Base(file), i+1, err)
				continue
			}
			kind, _ := events.KindOf(res)
			ns := res.Meta().Namespace
			if ns == "" {
				ns = "default"
			}
			events.SetDefaults(res, ns)
			if kind.Namespaced && ns != "default" {
				c.do("PUT", "/api/core/v2/namespaces/"+ns, `{"name":"`+ns+`"}`)
			}
			name := events.StoreName(res)
			path := "/api/core/v2/namespaces/" + ns + "/" + kind.Plural + "/" + name
			body, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			a := c.do("PUT", path, body)
			var ve events.ValidationError
			if verr := res.Validate(); errors.As(verr, &ve) {
				want(t, file+" invalid doc", a, 400)
				for _, fe := range ve {
					if !strings.Contains(string(a.body), `"field":"`+fe.Field+`"`) {
						t.Errorf("%s #%d: 400 body does not name %s: %s", filepath.Base(file), i+1, fe.Field, a.body)
					}
				}
				rejected++
				continue
			}
			want(t, filepath.Base(file)+" "+name, a, 201)
			got := c.do("GET", path, nil)
			want(t, "read back "+name, got, 200)
			var orig, back map[string]any
			_ = json.Unmarshal(w.Spec, &orig)
			_ = json.Unmarshal(got.body, &back)
			for k, v := range orig {
				// A field sent empty may come back filled with its default (an entity's
				// own subscription); a field sent with a value must come back equal.
				if !isZero(v) && !sameValue(v, back[k]) {
					t.Errorf("%s #%d %s: field %s: sent %v, read back %v", filepath.Base(file), i+1, name, k, v, back[k])
				}
			}
			stored++
		}
	}
	t.Logf("corpus: %d documents stored and read back intact, %d rejected with named fields", stored, rejected)
	if stored < 40 {
		t.Fatalf("only %d corpus documents stored", stored)
	}
}

// sameValue compares JSON values treating null, empty lists, empty maps and zero values
// as equal, since the API writes zero values out.
func sameValue(a, b any) bool {
	if isZero(a) && isZero(b) {
		return true
	}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		for k, v := range am {
			if !sameValue(v, bm[k]) {
				return false
			}
		}
		return true
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok {
		if len(al) != len(bl) {
			return false
		}
		for i := range al {
			if !sameValue(al[i], bl[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case float64:
		return x == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}
