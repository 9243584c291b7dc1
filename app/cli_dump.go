package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/picketmon/picket/events"
)

// runDump implements `picket dump`: every resource of the chosen kinds in the wrapped
// format, in a stable order, so that `picket create -f` of the output on a fresh server
// followed by another dump gives the same bytes.
func runDump(ctx context.Context, env *Env, args []string) error {
	var (
		f       cliFlags
		format  string
		file    string
		allNS   bool
		defKind []string
	)
	for _, k := range events.Kinds() {
		if !skipByDefault(k) {
			defKind = append(defKind, k.Plural)
		}
	}
	fs := newFlagSet(env, "dump", cliHelp{
		usage: "picket dump [KIND[,KIND]...|all] [flags]",
		description: `Write resources in the wrapped format (the input of 'picket create -f'), for
backups and for moving resources to another cluster. Kinds come in dependency order
(namespaces, users, then the rest), resources sorted by namespace and name.

Without KIND: ` + strings.Join(defKind, ", ") + `.
"all" adds events and apikeys. Valid kinds: ` + strings.Join(events.KindNames(), ", ") + `.

Users keep their password hashes, so the output is a secret: --file writes it with
mode 0600. Entities of class backend are left out: every server makes its own.`,
		examples: []string{
			"picket dump > backup.yml",
			"picket dump checks,handlers,filters --format json",
			"picket dump all --file /var/backups/picket.yml",
			"picket dump checks --all-namespaces=false -n production",
		},
	})
	fs.StringVar(&format, "format", "yaml", "yaml (documents separated by ---) or json (concatenated objects), e.g. --format json")
	fs.StringVar(&file, "file", "", "write to this file (mode 0600) instead of stdout, e.g. --file backup.yml")
	fs.BoolVar(&allNS, "all-namespaces", true,
		"dump every namespace; --all-namespaces=false dumps only --namespace (and that namespace itself), e.g. --all-namespaces=false -n production")
	addCommonFlags(fs, &f)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if err := checkFormat(format, "yaml", "json"); err != nil {
		return err
	}
	kinds, err := dumpKinds(fs.Args())
	if err != nil {
		return err
	}
	s, err := openSession(env, &f)
	if err != nil {
		return err
	}
	ns := ""
	if !allNS {
		ns = s.namespace
	}
	items, err := dumpResources(ctx, s, kinds, ns)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if format == "json" {
		err = events.EncodeJSON(&buf, items)
	} else {
		err = events.EncodeYAML(&buf, items)
	}
	if err != nil {
		return err
	}
	if file == "" {
		_, err = env.Stdout.Write(buf.Bytes())
		return err
	}
	if err := writeFileAtomic(file, buf.Bytes(), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "Wrote %s to %s\n", plural(len(items), "resource", "resources"), file)
	return nil
}

// skipByDefault reports whether dump leaves a kind out unless asked: events are state, not
// configuration, and API keys are credentials bound to one cluster.
func skipByDefault(k events.Kind) bool {
	return k.Plural == "events" || k.Plural == "apikeys"
}

// dumpKinds turns the KIND arguments (several, or comma-separated) into kinds, in the
// order of events.Kinds() whatever the order given.
func dumpKinds(args []string) ([]events.Kind, error) {
	want := map[string]bool{}
	if len(args) == 0 {
		for _, k := range events.Kinds() {
			want[k.Plural] = !skipByDefault(k)
		}
	}
	for _, a := range args {
		for _, name := range strings.Split(a, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if strings.EqualFold(name, "all") {
				for _, k := range events.Kinds() {
					want[k.Plural] = true
				}
				continue
			}
			k, err := lookupKind(name)
			if err != nil {
				return nil, err
			}
			want[k.Plural] = true
		}
	}
	var out []events.Kind
	for _, k := range events.Kinds() {
		if want[k.Plural] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, usageErrorf("no kinds to dump; valid kinds: all, %s", strings.Join(events.KindNames(), ", "))
	}
	return out, nil
}

// dumpResources lists every kind (in namespace ns, or all when ns is "") and returns the
// wrapped resources, sorted by namespace then name within each kind.
func dumpResources(ctx context.Context, s *session, kinds []events.Kind, ns string) ([]events.Wrapped, error) {
	var out []events.Wrapped
	for _, k := range kinds {
		raws, err := s.client.List(ctx, k, ns)
		if err != nil {
			return nil, s.explain(err)
		}
		type item struct {
			ns, name string
			w        events.Wrapped
		}
		items := make([]item, 0, len(raws))
		for _, raw := range raws {
			r := k.New()
			if err := json.Unmarshal(raw, r); err != nil {
				return nil, fmt.Errorf("%s from the server: %w", k.Plural, err)
			}
			if serverManaged(r) {
				continue
			}
			if ns != "" && k.Plural == "namespaces" && r.Meta().Name != ns {
				continue // a one-namespace dump carries only that namespace
			}
			w, err := events.Wrap(r)
			if err != nil {
				return nil, err
			}
			items = append(items, item{r.Meta().Namespace, events.StoreName(r), w})
		}
		sort.SliceStable(items, func(i, j int) bool {
			if items[i].ns != items[j].ns {
				return items[i].ns < items[j].ns
			}
			return items[i].name < items[j].name
		})
		for _, it := range items {
			out = append(out, it.w)
		}
	}
	return out, nil
}

// serverManaged reports resources that each server makes for itself and that would
// differ between the dumped cluster and the one the dump is restored to.
func serverManaged(r events.Resource) bool {
	e, ok := r.(*events.Entity)
	return ok && e.EntityClass == events.EntityBackend
}

// writeFileAtomic writes data to path through a temporary file in the same directory, so
// a failed write never leaves half a file behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
