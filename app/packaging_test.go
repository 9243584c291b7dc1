package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/knadh/koanf/parsers/yaml"
)

// The packages ship files that repeat facts of the code: the example configs list every
// key with its default, the units run commands with flags, and goreleaser.yaml and
// packaging/nfpm.yaml describe the same package. These tests keep them in step.

const packagingDir = "../packaging"

// packagingEnv is an environment without any PICKET_* variables.
func packagingEnv() *Env {
	return &Env{
		Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{},
		Getenv:  func(string) string { return "" },
		Environ: func() []string { return nil },
	}
}

func readPackagingFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// commentedKeyLine is a commented-out key in an example config: "#key: value".
var commentedKeyLine = regexp.MustCompile(`^#([a-z][a-z0-9-]*):(.*)$`)

// uncommentKeys returns the example config with every commented-out key line of keys
// enabled, and the keys it found in file order.
func uncommentKeys(text string, keys []configKey) (string, []string) {
	var out, found []string
	for _, line := range strings.Split(text, "\n") {
		if m := commentedKeyLine.FindStringSubmatch(line); m != nil && slices.ContainsFunc(keys, func(k configKey) bool { return k.name == m[1] }) {
			found = append(found, m[1])
			line = line[1:]
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n"), found
}

func checkListsEveryKey(t *testing.T, file string, found []string, keys []configKey) {
	t.Helper()
	var want []string
	for _, k := range keys {
		want = append(want, k.name)
	}
	if !slices.Equal(found, want) {
		t.Errorf("%s lists the keys\n  %v\nwant each key once, in the code's order:\n  %v", file, found, want)
	}
}

func TestPackagedBackendConfig(t *testing.T) {
	path := filepath.Join(packagingDir, "config/backend.yml")
	text := readPackagingFile(t, path)

	// As shipped, everything is commented out: the file loads and changes nothing.
	shipped, err := loadBackendConfig(packagingEnv(), nil, path)
	if err != nil {
		t.Fatalf("the shipped %s does not load: %v", path, err)
	}
	if err := shipped.Validate(); err != nil {
		t.Errorf("the shipped %s is not valid: %v", path, err)
	}

	// Every key is there, and uncommenting it gives the default it claims.
	enabled, found := uncommentKeys(text, backendKeys)
	checkListsEveryKey(t, path, found, backendKeys)
	uncommented := filepath.Join(t.TempDir(), "backend.yml")
	if err := os.WriteFile(uncommented, []byte(enabled), 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := loadBackendConfig(packagingEnv(), nil, uncommented)
	if err != nil {
		t.Fatalf("%s with every key uncommented does not load: %v", path, err)
	}
	checkSameFields(t, path, all, shipped)
}

// checkSameFields reports each configuration field whose value shown in the example file
// differs from the default.
func checkSameFields(t *testing.T, file string, shown, defaults any) {
	t.Helper()
	s, d := reflect.ValueOf(shown).Elem(), reflect.ValueOf(defaults).Elem()
	for i := 0; i < s.NumField(); i++ {
		tag := s.Type().Field(i).Tag.Get("koanf")
		if tag == "-" {
			continue
		}
		if !reflect.DeepEqual(s.Field(i).Interface(), d.Field(i).Interface()) {
			t.Errorf("%s shows %s: %#v, but the default is %#v", file, tag, s.Field(i).Interface(), d.Field(i).Interface())
		}
	}
}

func TestPackagedAgentConfig(t *testing.T) {
	path := filepath.Join(packagingDir, "config/agent.yml")
	text := readPackagingFile(t, path)

	shipped, err := loadAgentConfig(packagingEnv(), nil, path)
	if err != nil {
		t.Fatalf("the shipped %s does not load: %v", path, err)
	}
	if err := shipped.Validate(); err != nil {
		t.Errorf("the shipped %s is not valid: %v", path, err)
	}

	enabled, found := uncommentKeys(text, agentKeys)
	checkListsEveryKey(t, path, found, agentKeys)
	// The example of standalone checks must be a valid checks: list too.
	enabled = regexp.MustCompile(`(?m)^#(checks:|  )`).ReplaceAllString(enabled, "$1")
	uncommented := filepath.Join(t.TempDir(), "agent.yml")
	if err := os.WriteFile(uncommented, []byte(enabled), 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := loadAgentConfig(packagingEnv(), nil, uncommented)
	if err != nil {
		t.Fatalf("%s with every key uncommented does not load: %v", path, err)
	}
	if len(all.Checks) == 0 {
		t.Errorf("%s: the commented checks: example holds no check", path)
	}
	// name's default is the host name; the file shows an example instead.
	all.Name = shipped.Name
	checkSameFields(t, path, all, shipped)
}

// unitSettings reads the Key=Value lines of a systemd unit (later lines append, as
// systemd does for list settings).
func unitSettings(t *testing.T, name string) map[string][]string {
	t.Helper()
	s := map[string][]string{}
	for _, line := range strings.Split(readPackagingFile(t, filepath.Join(packagingDir, "systemd", name)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not Key=Value", name, line)
		}
		s[k] = append(s[k], v)
	}
	return s
}

func TestPackagedUnits(t *testing.T) {
	defaults := map[string]any{}
	for _, k := range backendKeys {
		defaults[k.name] = k.def
	}
	for _, tc := range []struct {
		unit, mode, config string
		want               map[string]string
	}{
		{"picket-backend.service", "server", "/etc/picket/backend.yml", map[string]string{
			"Type": "notify", "User": "picket", "Restart": "on-failure",
			"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
		}},
		{"picket-agent.service", "agent", "/etc/picket/agent.yml", map[string]string{
			"Type": "notify", "User": "picket", "Restart": "on-failure", "PrivateTmp": "yes",
		}},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			s := unitSettings(t, tc.unit)
			for k, v := range tc.want {
				if got := s[k]; !slices.Equal(got, []string{v}) {
					t.Errorf("%s=%v, want %s", k, got, v)
				}
			}
			rw := strings.Fields(strings.Join(s["ReadWritePaths"], " "))
			for _, dir := range []any{defaults["state-dir"], defaults["cache-dir"]} {
				if !slices.Contains(rw, dir.(string)) {
					t.Errorf("ReadWritePaths=%v lacks the default directory %s", rw, dir)
				}
			}

			// ExecStart is a command line the binary accepts.
			exec := strings.Fields(strings.Join(s["ExecStart"], ""))
			want := []string{"/usr/bin/picket", tc.mode, "--config-file", tc.config}
			if !slices.Equal(exec, want) {
				t.Fatalf("ExecStart=%v, want %v", exec, want)
			}
			if _, ok := commands[tc.mode]; !ok {
				t.Fatalf("picket has no %q command", tc.mode)
			}
			env := packagingEnv()
			if code := Run(context.Background(), env, append(exec[1:], "--help")); code != 0 {
				t.Errorf("picket %s --help exited %d: %s", strings.Join(exec[1:], " "), code, env.Stderr)
			}
		})
	}
}

// TestPackagingConfigsAgree checks that goreleaser.yaml's nfpms section and
// packaging/nfpm.yaml build the same package, and that both ship every file under
// packaging/systemd and packaging/config.
func TestPackagingConfigsAgree(t *testing.T) {
	parse := func(path string) map[string]any {
		m, err := yaml.Parser().Unmarshal([]byte(readPackagingFile(t, path)))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return m
	}
	gr := parse("../goreleaser.yaml")
	nf := parse(filepath.Join(packagingDir, "nfpm.yaml"))

	nfpms, _ := gr["nfpms"].([]any)
	if len(nfpms) != 1 {
		t.Fatalf("goreleaser.yaml has %d nfpms entries, want 1", len(nfpms))
	}
	g := nfpms[0].(map[string]any)
	if g["package_name"] != nf["name"] {
		t.Errorf("package name: goreleaser %v, nfpm %v", g["package_name"], nf["name"])
	}
	for _, k := range []string{"vendor", "homepage", "maintainer", "license", "section", "priority", "description", "scripts"} {
		if !reflect.DeepEqual(g[k], nf[k]) {
			t.Errorf("%s differs:\ngoreleaser.yaml:     %v\npackaging/nfpm.yaml: %v", k, g[k], nf[k])
		}
	}

	// nfpm.yaml adds the binary itself; goreleaser puts it in bindir.
	var nfContents []any
	for _, c := range nf["contents"].([]any) {
		if c.(map[string]any)["dst"] == "/usr/bin/picket" {
			continue
		}
		nfContents = append(nfContents, c)
	}
	if g["bindir"] != "/usr/bin" {
		t.Errorf("goreleaser.yaml bindir is %v, want /usr/bin", g["bindir"])
	}
	if !reflect.DeepEqual(g["contents"], nfContents) {
		t.Errorf("contents differ:\ngoreleaser.yaml:     %v\npackaging/nfpm.yaml: %v", g["contents"], nfContents)
	}

	shipped := map[string]bool{}
	for _, c := range nfContents {
		if src, ok := c.(map[string]any)["src"].(string); ok {
			shipped[src] = true
		}
	}
	for _, dir := range []string{"systemd", "config"} {
		entries, err := os.ReadDir(filepath.Join(packagingDir, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if src := "packaging/" + dir + "/" + e.Name(); !shipped[src] {
				t.Errorf("%s is not in the packages", src)
			}
		}
	}
	for _, script := range g["scripts"].(map[string]any) {
		info, err := os.Stat(filepath.Join("..", script.(string)))
		if err != nil {
			t.Error(err)
		} else if info.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", script)
		}
	}

	// The build stamps the variables `picket version` prints.
	builds := gr["builds"].([]any)
	ldflags := strings.Join(strings.Fields(strings.Join(toList(builds[0].(map[string]any)["ldflags"]), " ")), " ")
	for _, v := range []string{"version", "commit", "date"} {
		if !strings.Contains(ldflags, "-X github.com/picketmon/picket/app."+v+"=") {
			t.Errorf("goreleaser.yaml ldflags %q do not set app.%s", ldflags, v)
		}
	}
	_ = [...]string{version, commit, date} // the variables the ldflags name
}
