package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/client"
)

// createDoc is one document of the input of `picket create`, ready to be written.
type createDoc struct {
	where string // "checks.yml document 2"
	kind  events.Kind
	res   events.Resource
	name  string // storage name, e.g. "cpu" or "web01/cpu" for events
}

// label names the document in messages: "checks.yml document 2 (CheckConfig cpu)".
func (d *createDoc) label() string {
	return fmt.Sprintf("%s (%s %s)", d.where, d.kind.Type, d.name)
}

// runCreate implements `picket create -f`: it reads every document, validates all of them,
// and writes them (create or replace) only when none has a problem.
func runCreate(ctx context.Context, env *Env, args []string) error {
	var (
		f       cliFlags
		files   []string
		verbose bool
	)
	fs := newFlagSet(env, "create", cliHelp{
		usage: "picket create -f FILE|DIR|- [-f ...] [flags]",
		description: `Create or replace resources from files in the wrapped format: YAML documents
separated by ---, or concatenated JSON objects, each
  {type: CheckConfig, api_version: core/v2, metadata: {name: cpu}, spec: {...}}
as written by 'picket dump' and 'sensuctl dump'.

Every document is decoded and validated before anything is written: when one has a
problem, every problem is printed and nothing is written. Resources without
metadata.namespace go to --namespace. Namespaces are written first, then users, then
the rest in the order of the input. Unknown fields are kept (with a warning).`,
		examples: []string{
			"picket create -f checks.yml",
			"picket create -f ./resources/ -f extra.json --namespace production",
			"picket dump | picket create -f - --api-url http://new-server:8080",
		},
	})
	fs.StringArrayVarP(&files, "file", "f", nil,
		"file, directory (every *.yml, *.yaml and *.json in it, sorted) or - for stdin; repeat for more, e.g. -f checks.yml -f handlers/")
	addCommonFlags(fs, &f)
	fs.BoolVarP(&verbose, "verbose", "v", false, "print a line per resource written, e.g. -v")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q; give files with -f, e.g. picket create -f %s", fs.Arg(0), fs.Arg(0))
	}
	if len(files) == 0 {
		return usageErrorf("no input: give -f FILE, -f DIR or -f - (stdin); run 'picket create --help'")
	}
	s, err := openSession(env, &f)
	if err != nil {
		return err
	}

	docs, problems := readCreateDocs(env, files, s.namespace)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(env.Stderr, p)
		}
		return fmt.Errorf("nothing was written: %s", plural(len(problems), "problem", "problems"))
	}
	if len(docs) == 0 {
		return fmt.Errorf("no resources found in %s", strings.Join(files, ", "))
	}

	if missing, err := missingNamespaces(ctx, s, docs); err != nil {
		return err
	} else if len(missing) > 0 {
		for _, p := range missing {
			fmt.Fprintln(env.Stderr, p)
		}
		return fmt.Errorf("nothing was written: %s", plural(len(missing), "problem", "problems"))
	}

	// Namespaces first, so the resources in them can be written, then users, whom API
	// keys name; everything else keeps the order of the input.
	rank := func(d *createDoc) int {
		switch d.kind.Plural {
		case "namespaces":
			return 0
		case "users":
			return 1
		}
		return 2
	}
	order := make([]*createDoc, len(docs))
	copy(order, docs)
	sort.SliceStable(order, func(i, j int) bool { return rank(order[i]) < rank(order[j]) })
	for i, d := range order {
		ns := d.res.Meta().Namespace
		if err := s.client.Put(ctx, d.kind, ns, d.name, d.res); err != nil {
			msg := fmt.Errorf("%s: %w", d.label(), s.explain(err))
			if i > 0 {
				return fmt.Errorf("%w (%d of %d resources were written before this one)", msg, i, len(order))
			}
			return msg
		}
		if verbose {
			fmt.Fprintf(env.Stdout, "Created %s %s%s\n", singular(d.kind), d.name, where(d.kind, ns, "in"))
		}
	}
	fmt.Fprintf(env.Stdout, "Created %s\n", plural(len(order), "resource", "resources"))
	return nil
}

// missingNamespaces lists the documents whose namespace neither the input creates nor
// the server has, one problem each: found before anything is written, they would stop
// the writes half way.
func missingNamespaces(ctx context.Context, s *session, docs []*createDoc) ([]string, error) {
	nsKind, _ := events.LookupKind("namespaces")
	known := map[string]bool{}
	for _, d := range docs {
		if d.kind.Plural == "namespaces" {
			known[d.name] = true
		}
	}
	var problems []string
	for _, d := range docs {
		ns := d.res.Meta().Namespace
		if !d.kind.Namespaced || ns == "" {
			continue
		}
		if _, seen := known[ns]; !seen {
			_, err := s.client.Get(ctx, nsKind, "", ns)
			var ae *client.APIError
			switch {
			case err == nil:
				known[ns] = true
			case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
				known[ns] = false
			default:
				return nil, fmt.Errorf("check namespace %q: %w", ns, s.explain(err))
			}
		}
		if !known[ns] {
			problems = append(problems, fmt.Sprintf("%s: namespace %q does not exist; add a document for it to the input "+
				"({type: Namespace, api_version: core/v2, metadata: {name: %s}, spec: {}}) or give the resource another namespace", d.label(), ns, ns))
		}
	}
	return problems, nil
}

// readCreateDocs reads, decodes, defaults and validates every input. It returns the
// documents and every problem found; unknown fields and duplicates are warned about on
// stderr but are not problems.
func readCreateDocs(env *Env, inputs []string, namespace string) ([]*createDoc, []string) {
	var (
		docs     []*createDoc
		problems []string
	)
	type source struct {
		name string
		data []byte
	}
	var sources []source
	stdinUsed := false
	for _, in := range inputs {
		if in == "-" {
			if stdinUsed {
				problems = append(problems, "-f -: stdin can be read only once")
				continue
			}
			stdinUsed = true
			data, err := io.ReadAll(env.Stdin)
			if err != nil {
				problems = append(problems, fmt.Sprintf("stdin: %v", err))
				continue
			}
			sources = append(sources, source{"stdin", data})
			continue
		}
		st, err := os.Stat(in)
		if err != nil {
			problems = append(problems, describeFileError(in, err))
			continue
		}
		paths := []string{in}
		if st.IsDir() {
			paths, err = resourceFiles(in)
			if err != nil {
				problems = append(problems, describeFileError(in, err))
				continue
			}
			if len(paths) == 0 {
				problems = append(problems, fmt.Sprintf("%s: no *.yml, *.yaml or *.json files in this directory", in))
				continue
			}
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				problems = append(problems, describeFileError(p, err))
				continue
			}
			sources = append(sources, source{p, data})
		}
	}

	seen := map[string]string{} // kind/namespace/name -> where
	for _, src := range sources {
		wrapped, err := events.DecodeWrapped(bytes.NewReader(src.data), src.name)
		if err != nil {
			// The documents that did decode are checked all the same (below), so that
			// every problem shows in one run.
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			for _, e := range errs {
				msg := e.Error()
				if !strings.HasPrefix(msg, src.name) {
					msg = src.name + ": " + msg
				}
				problems = append(problems, msg)
			}
		}
		for _, w := range wrapped {
			at := fmt.Sprintf("%s document %d", src.name, w.Doc)
			res, err := events.Unwrap(w)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", at, err))
				continue
			}
			k, ok := events.KindOf(res)
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: resources of type %T cannot be created", at, res))
				continue
			}
			meta := res.Meta()
			if k.Namespaced && meta.Namespace == "" {
				meta.Namespace = namespace
			}
			events.SetDefaults(res, meta.Namespace)
			d := &createDoc{where: at, kind: k, res: res, name: events.StoreName(res)}
			if err := res.Validate(); err != nil {
				var ve events.ValidationError
				if errors.As(err, &ve) {
					for _, fe := range ve {
						problems = append(problems, fmt.Sprintf("%s: %s: %s", d.label(), fe.Field, fe.Message))
					}
				} else {
					problems = append(problems, fmt.Sprintf("%s: %v", d.label(), err))
				}
				continue
			}
			if unknown := events.UnknownFields(res); len(unknown) > 0 {
				fmt.Fprintf(env.Stderr, "warning: %s: unknown fields kept as they are: %s\n", d.label(), strings.Join(unknown, ", "))
			}
			for _, u := range events.UnsupportedFields(res) {
				fmt.Fprintf(env.Stderr, "warning: %s: %s\n", d.label(), u)
			}
			key := k.Plural + "/" + meta.Namespace + "/" + d.name
			if prev, dup := seen[key]; dup {
				fmt.Fprintf(env.Stderr, "warning: %s replaces %s, which has the same name\n", d.label(), prev)
			}
			seen[key] = d.where
			docs = append(docs, d)
		}
	}
	return docs, problems
}

// resourceFiles lists the *.yml, *.yaml and *.json files directly in dir, sorted.
func resourceFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yml", ".yaml", ".json":
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// describeFileError says what went wrong with an input path without repeating it.
func describeFileError(path string, err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("%s: %v", path, err)
}
