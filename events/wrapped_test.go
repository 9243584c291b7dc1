package events

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeWrapped(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		types   []string
		names   []string
		wantErr []string // fragments the error must contain; nil means no error
	}{
		{
			name: "multi-document YAML",
			input: `---
type: CheckConfig
api_version: core/v2
metadata:
  name: cpu
spec:
  command: check-cpu.sh
  interval: 60
---
type: 'Handler '
metadata:
  name: slack
spec:
  command: slack.sh
---
`,
			types: []string{"CheckConfig", "Handler"},
			names: []string{"cpu", "slack"},
		},
		{
			name: "concatenated JSON",
			input: `  {"type": "CheckConfig", "api_version": "core/v2", "metadata": {"name": "cpu"}, "spec": {"command": "c", "interval": 10}}
{"type":"EventFilter","metadata":{"name":"f"},"spec":{"action":"allow","expressions":["true"]}}{"type":"Namespace","spec":{"name":"ops"}}`,
			types: []string{"CheckConfig", "EventFilter", "Namespace"},
			names: []string{"cpu", "f", ""},
		},
		{
			name:    "unknown type",
			input:   "type: CheckConfig\nmetadata: {name: a}\nspec: {}\n---\ntype: Chek\nmetadata: {name: b}\nspec: {}\n",
			types:   []string{"CheckConfig"},
			names:   []string{"a"},
			wantErr: []string{"in.yml: document 2 (line 5)", `unknown type "Chek"`, "valid types are", "CheckConfig", "EventFilter"},
		},
		{
			name:    "unknown type in JSON",
			input:   `{"type":"Checks2","spec":{}}`,
			wantErr: []string{"in.yml: document 1", `unknown type "Checks2"`},
		},
		{
			name:    "missing type",
			input:   "metadata: {name: a}\nspec: {}\n",
			wantErr: []string{"document 1", "missing type; set type to one of"},
		},
		{
			name:    "key beside spec",
			input:   "type: Handler\nmetadata: {name: a}\ncommand: x\nspec: {}\n",
			wantErr: []string{"document 1", `unknown key(s) command`},
		},
		{
			name:    "unknown metadata field",
			input:   "type: Handler\nmetadata: {name: a, nmespace: x}\nspec: {}\n",
			wantErr: []string{"document 1", "metadata:", "nmespace"},
		},
		{
			name:    "spec not a mapping",
			input:   "type: Handler\nmetadata: {name: a}\nspec: [1]\n",
			wantErr: []string{"spec must be a mapping"},
		},
		{
			name:    "invalid YAML",
			input:   "type: Handler\nmetadata: {name: a}\n---\ntype: [\n",
			types:   []string{"Handler"},
			names:   []string{"a"},
			wantErr: []string{"in.yml: document 2: invalid YAML"},
		},
		{
			// A syntax error spoils only its own document: the ones after it are read
			// and checked, with their lines counted from the start of the file.
			name:    "invalid YAML, then more documents",
			input:   "type: Handler\nmetadata: {name: a}\n---\ntype: [\n---\ntype: Chek\nmetadata: {name: b}\nspec: {}\n---\ntype: Handler\nmetadata: {name: c}\nspec: {}\n",
			types:   []string{"Handler", "Handler"},
			names:   []string{"a", "c"},
			wantErr: []string{"in.yml: document 2: invalid YAML: yaml: line 4:", "in.yml: document 3 (line 6)", `unknown type "Chek"`},
		},
		{
			name:    "bad value, lines from the start of the file",
			input:   "type: Handler\nmetadata: {name: a}\n---\ntype: Handler\nmetadata: [x]\nspec: {}\n",
			types:   []string{"Handler"},
			names:   []string{"a"},
			wantErr: []string{"in.yml: document 2 (line 4)"},
		},
		{
			// Directives and comments go with the document after them; "..." ends one;
			// lines of a block scalar are not markers, being indented; CRLF lines.
			name: "directives, end markers, block scalars",
			input: "%YAML 1.1\r\n# the first\r\n---\r\ntype: Handler\r\nmetadata: {name: a}\r\nspec:\r\n  command: |\r\n    echo\r\n    ---\r\n    ...\r\n...\r\n" +
				"type: Handler\nmetadata: {name: b}\nspec: {}\n--- # c\ntype: Handler\nmetadata: {name: c}\nspec: {}\n",
			types: []string{"Handler", "Handler", "Handler"},
			names: []string{"a", "b", "c"},
		},
		{
			name:    "invalid JSON",
			input:   `{"type":"Handler","spec":{}} {"type":`,
			types:   []string{"Handler"},
			names:   []string{""},
			wantErr: []string{"in.yml: document 2 (line 1): invalid JSON", "nothing after it was read"},
		},
		{
			// As dump writes JSON, each document starts a line with "{": reading
			// resumes at the next one after a syntax error.
			name: "invalid JSON, then more documents",
			input: "{\n  \"type\": \"Handler\",\n  \"metadata\": {\"name\": \"a\"},\n  \"spec\": {}\n}\n" +
				"{\n  \"type\": \"Handler\",\n  \"metadata\": {\"name\": \"b\",},\n  \"spec\": {}\n}\n" +
				"{\"type\": \"Chek\", \"metadata\": {\"name\": \"c\"}, \"spec\": {}}\n" +
				"{\"type\": \"Handler\", \"metadata\": {\"name\": \"d\"}, \"spec\": {}}\n",
			types: []string{"Handler", "Handler"},
			names: []string{"a", "d"},
			wantErr: []string{"in.yml: document 2 (line 6): invalid JSON", "reading resumes at line 11",
				"in.yml: document 3 (line 11)", `unknown type "Chek"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := DecodeWrapped(strings.NewReader(tt.input), "in.yml")
			if tt.wantErr == nil && err != nil {
				t.Fatalf("DecodeWrapped: %v", err)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("DecodeWrapped succeeded, want an error")
				}
				for _, frag := range tt.wantErr {
					if !strings.Contains(err.Error(), frag) {
						t.Errorf("error %q does not contain %q", err, frag)
					}
				}
			}
			var types, names []string
			for _, w := range ws {
				types = append(types, w.Type)
				names = append(names, w.Metadata.Name)
				if w.APIVersion != APIVersion {
					t.Errorf("api_version = %q, want default %q", w.APIVersion, APIVersion)
				}
			}
			if !reflect.DeepEqual(types, tt.types) || !reflect.DeepEqual(names, tt.names) {
				t.Errorf("decoded %v %v, want %v %v", types, names, tt.types, tt.names)
			}
		})
	}
}

func TestUnwrapErrors(t *testing.T) {
	tests := []struct {
		name string
		w    Wrapped
		want string
	}{
		{"api version", Wrapped{Type: "CheckConfig", APIVersion: "core/v3", Metadata: ObjectMeta{Name: "c"}},
			`CheckConfig c: api_version "core/v3" is not supported; Picket serves core/v2 only`},
		{"unknown type", Wrapped{Type: "Pipeline", APIVersion: "core/v2"}, `unknown type "Pipeline"; valid types are`},
		{"bad field type", Wrapped{Type: "Handler", Metadata: ObjectMeta{Name: "h"}, Spec: json.RawMessage(`{"socket":{"host":"a","port":"x"}}`)},
			"Handler h: spec.socket.port: expected a whole number, zero or more, got string"},
		{"bad interval type", Wrapped{Type: "CheckConfig", Metadata: ObjectMeta{Name: "c"}, Spec: json.RawMessage(`{"interval":"60s"}`)},
			"CheckConfig c: spec.interval: expected a whole number, got string"},
		{"conflicting names", Wrapped{Type: "Namespace", Metadata: ObjectMeta{Name: "a"}, Spec: json.RawMessage(`{"name":"b"}`)},
			`metadata.name "a" differs from the spec's name "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Unwrap(tt.w)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Unwrap error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWrapFlatKinds(t *testing.T) {
	tests := []struct {
		name     string
		r        Resource
		wantSpec string
	}{
		{"namespace", &Namespace{Name: "ops"}, `{"name":"ops"}`},
		{"user keeps password out when empty", &User{Username: "alice", PasswordHash: "$2a$x", Groups: []string{"ops"}},
			`{"username":"alice","password_hash":"$2a$x","groups":["ops"],"disabled":false}`},
		{"user with password", &User{Username: "bob", Password: "P@ssw0rd!", Groups: []string{"ops"}},
			`{"username":"bob","password":"P@ssw0rd!","groups":["ops"],"disabled":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Wrap(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(w.Metadata, ObjectMeta{Name: tt.r.Meta().Name}) {
				t.Errorf("metadata = %+v, want only the name", w.Metadata)
			}
			if string(w.Spec) != tt.wantSpec {
				t.Errorf("spec = %s, want %s", w.Spec, tt.wantSpec)
			}
			back, _ := roundTrip(t, tt.r)
			if !reflect.DeepEqual(mustJSON(t, back), mustJSON(t, tt.r)) {
				t.Errorf("round trip = %s, want %s", mustJSON(t, back), mustJSON(t, tt.r))
			}
		})
	}
}

func TestFlatNameSync(t *testing.T) {
	// Namespaces decoded from a wrapper whose spec is empty take the metadata name.
	r, err := Unwrap(Wrapped{Type: "Namespace", Metadata: ObjectMeta{Name: "ops"}, Spec: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ns := r.(*Namespace); ns.Name != "ops" {
		t.Errorf("Name = %q, want ops", ns.Name)
	}
	// Renaming through Meta and through the field both stick.
	n := &Namespace{Name: "a"}
	n.Meta().Name = "b"
	if got := string(mustJSON(t, n)); got != `{"name":"b"}` {
		t.Errorf("after Meta rename: %s", got)
	}
	if StoreName(n) != "b" || n.Name != "b" {
		t.Errorf("after Meta rename StoreName = %q, Name = %q", StoreName(n), n.Name)
	}
	n.Name = "c"
	if got := n.Meta().Name; got != "c" {
		t.Errorf("after field rename Meta().Name = %q", got)
	}
}

func TestEncode(t *testing.T) {
	c := validCheck()
	c.Command = "a && b <x>"
	c.Metadata.Labels = map[string]string{"zone": "b", "app": "a"}
	e := &Event{
		Metadata:  ObjectMeta{Namespace: "default"},
		Timestamp: 1700000000,
		Entity:    &Entity{Metadata: ObjectMeta{Name: "web", Namespace: "default"}, EntityClass: "agent"},
		Check:     &Check{CheckConfig: CheckConfig{Metadata: ObjectMeta{Name: "cpu"}}, Status: 2, Output: "line 1\nline 2\n"},
	}
	var items []Wrapped
	for _, r := range []Resource{c, e} {
		w, err := Wrap(r)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, w)
	}

	var y bytes.Buffer
	if err := EncodeYAML(&y, items); err != nil {
		t.Fatal(err)
	}
	out := y.String()
	for _, want := range []string{
		"type: CheckConfig\napi_version: core/v2\nmetadata:\n  labels:\n    app: a\n    zone: b\n  name: cpu\n  namespace: default\nspec:\n  check_hooks: null\n  command: a && b <x>\n",
		"\n---\ntype: Event\napi_version: core/v2\nmetadata:\n  namespace: default\nspec:\n",
		"    output: |\n      line 1\n      line 2\n",
		"    output_metric_format: \"\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("YAML output lacks %q:\n%s", want, out)
		}
	}
	var j bytes.Buffer
	if err := EncodeJSON(&j, items); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(j.String(), `"command": "a && b <x>"`) {
		t.Errorf("JSON output escapes or lacks the command:\n%s", j.String())
	}
	if !strings.HasPrefix(j.String(), "{\n  \"type\": \"CheckConfig\",\n  \"api_version\": \"core/v2\",\n  \"metadata\": {") {
		t.Errorf("JSON output does not start with the wrapper in order:\n%s", j.String())
	}

	// Both encodings read back to the same resources.
	for name, buf := range map[string]*bytes.Buffer{"yaml": &y, "json": &j} {
		ws, err := DecodeWrapped(buf, name)
		if err != nil || len(ws) != 2 {
			t.Fatalf("%s: decode: %v (%d docs)", name, err, len(ws))
		}
		for i, w := range ws {
			r, err := Unwrap(w)
			if err != nil {
				t.Fatalf("%s: unwrap: %v", name, err)
			}
			if got, want := mustJSON(t, r), mustJSON(t, []Resource{c, e}[i]); !bytes.Equal(got, want) {
				t.Errorf("%s: doc %d = %s\nwant %s", name, i+1, got, want)
			}
		}
	}
}
