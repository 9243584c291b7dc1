package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/client"
)

// addFormatFlag registers --format for list and get.
func addFormatFlag(fs *pflag.FlagSet, format *string) {
	fs.StringVar(format, "format", "",
		"table, json or yaml, e.g. --format json (default: the one 'picket login --format' stored, else table)")
}

// resolveFormat picks the output format: the flag, else the stored default, else table.
func resolveFormat(flag string, s *session) (string, error) {
	format := flag
	if format == "" {
		format = s.stored.Format
	}
	if format == "" {
		format = "table"
	}
	return format, checkFormat(format, "table", "json", "yaml")
}

// kindsHelp is the list of kinds for help texts.
func kindsHelp() string {
	return "KIND is one of " + strings.Join(events.KindNames(), ", ") + " (singular names work too)."
}

// runList implements `picket list KIND`.
func runList(ctx context.Context, env *Env, args []string) error {
	var (
		f      cliFlags
		format string
		allNS  bool
	)
	fs := newFlagSet(env, "list", cliHelp{
		usage: "picket list KIND [flags]",
		description: "List the resources of a kind in a namespace (or all of them with -A) as a table\n" +
			"that fits 80 columns (long cells are cut with …), or as JSON or YAML.\n\n" + kindsHelp() +
			"\nAlso aggregates: the totals of the check aggregates (ok, warning, critical,\n" +
			"unknown, stale), which Picket computes and are not stored resources.",
		examples: []string{
			"picket list checks",
			"picket list entities -A",
			"picket list events --namespace production --format json",
			"picket list aggregates",
		},
	})
	addFormatFlag(fs, &format)
	fs.BoolVarP(&allNS, "all-namespaces", "A", false, "list every namespace, with a NAMESPACE column, e.g. -A")
	addCommonFlags(fs, &f)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if format != "" {
		if err := checkFormat(format, "table", "json", "yaml"); err != nil {
			return err
		}
	}
	if fs.NArg() != 1 {
		return usageErrorf("want exactly one KIND, e.g. picket list checks; %s", kindsHelp())
	}
	if isAggregates(fs.Arg(0)) {
		return listAggregates(ctx, env, &f, format, allNS)
	}
	k, err := lookupKind(fs.Arg(0))
	if err != nil {
		return err
	}
	s, err := openSession(env, &f)
	if err != nil {
		return err
	}
	if format, err = resolveFormat(format, s); err != nil {
		return err
	}
	ns := s.namespace
	if allNS || !k.Namespaced {
		ns = ""
	}
	raws, err := s.client.List(ctx, k, ns)
	if err != nil {
		return s.explain(err)
	}
	switch format {
	case "json", "yaml":
		if raws == nil {
			raws = []json.RawMessage{}
		}
		return writeStructured(env.Stdout, format, raws)
	}
	if len(raws) == 0 {
		switch {
		case !k.Namespaced:
			fmt.Fprintf(env.Stdout, "No %s found.\n", k.Plural)
		case ns == "":
			fmt.Fprintf(env.Stdout, "No %s found in any namespace.\n", k.Plural)
		default:
			fmt.Fprintf(env.Stdout, "No %s found in namespace %s.\n", k.Plural, ns)
		}
		return nil
	}
	objs, err := decodeObjects(raws)
	if err != nil {
		return err
	}
	return writeList(env.Stdout, k, objs, k.Namespaced && ns == "", time.Now())
}

// writeList writes the table of a list; withNS adds a NAMESPACE column first.
func writeList(w io.Writer, k events.Kind, objs []jsonObject, withNS bool, now time.Time) error {
	cols := columnsFor(k.Plural, now)
	if withNS {
		cols = append([]column{{"NAMESPACE", 9, jsonObject.namespace}}, cols...)
	}
	sort.SliceStable(objs, func(i, j int) bool {
		if a, b := objs[i].namespace(), objs[j].namespace(); a != b {
			return a < b
		}
		return objs[i].name() < objs[j].name()
	})
	headers := make([]string, len(cols))
	mins := make([]int, len(cols))
	for i, c := range cols {
		headers[i], mins[i] = c.header, c.min
	}
	rows := make([][]string, len(objs))
	for r, o := range objs {
		rows[r] = make([]string, len(cols))
		for i, c := range cols {
			rows[r][i] = c.value(o)
		}
	}
	return writeTable(w, headers, mins, rows, tableWidth)
}

// writeStructured writes v (raw JSON) indented, as JSON or as YAML.
func writeStructured(w io.Writer, format string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// nameArgs reads the NAME of get and delete; an event may also be given as ENTITY CHECK.
func nameArgs(cmd string, k events.Kind, args []string) (string, error) {
	switch {
	case len(args) == 1 && args[0] != "":
		if k.Plural == "events" && !strings.Contains(args[0], "/") {
			return "", usageErrorf("an event is named ENTITY/CHECK (or ENTITY CHECK), e.g. picket %s event web01/cpu", cmd)
		}
		return args[0], nil
	case len(args) == 2 && k.Plural == "events":
		return args[0] + "/" + args[1], nil
	case len(args) == 0:
		return "", usageErrorf("missing NAME, e.g. picket %s %s NAME", cmd, singular(k))
	}
	return "", usageErrorf("want KIND NAME, got %d arguments after the kind", len(args))
}

// notFound rewrites a 404 into "check cpu not found in namespace default".
func notFound(err error, k events.Kind, ns, name string) error {
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		msg := fmt.Sprintf("%s %s not found%s", singular(k), name, where(k, ns, "in"))
		if ae.Message != "" && !strings.Contains(ae.Message, "not found") {
			// Something else is missing, such as the namespace: say what.
			msg += ": " + ae.Message
		}
		return errors.New(msg)
	}
	return nil
}

// runGet implements `picket get KIND NAME`.
func runGet(ctx context.Context, env *Env, args []string) error {
	var (
		f      cliFlags
		format string
	)
	fs := newFlagSet(env, "get", cliHelp{
		usage: "picket get KIND NAME [flags]",
		description: "Show one resource: its fields as aligned \"Key: value\" lines, or as JSON or YAML\n" +
			"(the exact form 'picket create' would need after wrapping). Events are named\n" +
			"ENTITY/CHECK.\n\n" + kindsHelp(),
		examples: []string{
			"picket get check cpu",
			"picket get entity web01 --format yaml",
			"picket get event web01/cpu -n production",
		},
	})
	addFormatFlag(fs, &format)
	addCommonFlags(fs, &f)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if format != "" {
		if err := checkFormat(format, "table", "json", "yaml"); err != nil {
			return err
		}
	}
	if fs.NArg() < 1 {
		return usageErrorf("missing KIND and NAME, e.g. picket get check cpu; %s", kindsHelp())
	}
	k, err := lookupKind(fs.Arg(0))
	if err != nil {
		return err
	}
	name, err := nameArgs("get", k, fs.Args()[1:])
	if err != nil {
		return err
	}
	s, err := openSession(env, &f)
	if err != nil {
		return err
	}
	if format, err = resolveFormat(format, s); err != nil {
		return err
	}
	raw, err := s.client.Get(ctx, k, s.namespace, name)
	if err != nil {
		if nf := notFound(err, k, s.namespace, name); nf != nil {
			return nf
		}
		return s.explain(err)
	}
	if format != "table" {
		return writeStructured(env.Stdout, format, raw)
	}
	return writeKeyValues(env.Stdout, raw, tableWidth)
}

// runDelete implements `picket delete KIND NAME`.
func runDelete(ctx context.Context, env *Env, args []string) error {
	var f cliFlags
	fs := newFlagSet(env, "delete", cliHelp{
		usage: "picket delete KIND NAME [flags]",
		description: "Delete one resource. Events are named ENTITY/CHECK. There is no confirmation:\n" +
			"keep a 'picket dump' if you may want it back.\n\n" + kindsHelp(),
		examples: []string{
			"picket delete check cpu",
			"picket delete silenced 'linux:*' -n production",
			"picket delete event web01/cpu",
		},
	})
	addCommonFlags(fs, &f)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usageErrorf("missing KIND and NAME, e.g. picket delete check cpu; %s", kindsHelp())
	}
	k, err := lookupKind(fs.Arg(0))
	if err != nil {
		return err
	}
	name, err := nameArgs("delete", k, fs.Args()[1:])
	if err != nil {
		return err
	}
	s, err := openSession(env, &f)
	if err != nil {
		return err
	}
	if err := s.client.Delete(ctx, k, s.namespace, name); err != nil {
		if nf := notFound(err, k, s.namespace, name); nf != nil {
			return nf
		}
		return s.explain(err)
	}
	fmt.Fprintf(env.Stdout, "Deleted %s %s%s\n", singular(k), name, where(k, s.namespace, "from"))
	return nil
}
