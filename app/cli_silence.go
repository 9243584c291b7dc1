package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/client"
)

// runSilence implements `picket silence`: create a silence for a subscription, a check,
// or both.
func runSilence(ctx context.Context, env *Env, args []string) error {
	var (
		f                  cliFlags
		sub, check, reason string
		expire, begin      string
		expireOnResolve    bool
	)
	fs := newFlagSet(env, "silence", cliHelp{
		usage: "picket silence [flags]",
		description: "Silence events of a subscription, of a check, or of a check on a subscription:\n" +
			"events they cover are stored with is_silenced, and handlers with the not_silenced\n" +
			"filter skip them. Remove a silence with 'picket delete silenced NAME'.",
		examples: []string{
			"picket silence --subscription linux --reason 'kernel upgrade' --expire 2h",
			"picket silence --check disk --expire-on-resolve",
			"picket silence --subscription entity:web01 --begin 22:00 --expire 30m",
		},
	})
	fs.StringVar(&sub, "subscription", "", "subscription to silence, e.g. linux or entity:web01 (default: every subscription)")
	fs.StringVar(&check, "check", "", "check to silence, e.g. disk (default: every check)")
	fs.StringVar(&reason, "reason", "", "why, shown with the silence")
	fs.StringVar(&expire, "expire", "", "how long the silence lasts from its begin, as a duration or seconds, e.g. 2h or 3600 (default: until deleted)")
	fs.BoolVar(&expireOnResolve, "expire-on-resolve", false, "end the silence when a silenced check resolves")
	fs.StringVar(&begin, "begin", "", "when the silence starts: RFC 3339 (2030-01-02T15:04:05Z), a time today (22:00, UTC) or a delay (+30m) (default: now)")
	addCommonFlags(fs, &f)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q; use --subscription and --check", fs.Arg(0))
	}
	if sub == "" && check == "" {
		return usageErrorf("say what to silence with --subscription, --check, or both")
	}
	now := time.Now()
	s := &events.Silenced{Subscription: sub, Check: check, Reason: reason, ExpireOnResolve: expireOnResolve, Expire: -1}
	if expire != "" {
		secs, err := silenceSeconds(expire)
		if err != nil {
			return usageErrorf("--expire %q: %v", expire, err)
		}
		s.Expire = secs
	}
	if begin != "" {
		t, err := parseBegin(begin, now)
		if err != nil {
			return usageErrorf("--begin %q: %v", begin, err)
		}
		s.Begin = t.Unix()
		if s.Expire > 0 && s.Begin+s.Expire <= now.Unix() {
			return usageErrorf("--begin %q with --expire %q: the silence would have ended at %s, already past; give a later --begin or a longer --expire",
				begin, expire, time.Unix(s.Begin+s.Expire, 0).UTC().Format(time.RFC3339))
		}
	}
	sess, err := openSession(env, &f)
	if err != nil {
		return err
	}
	s.Metadata.Namespace = sess.namespace
	events.SetDefaults(s, sess.namespace)
	if err := s.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	k, _ := events.LookupKind("silenced")
	if _, err := sess.client.Create(ctx, k, sess.namespace, s); err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			return fmt.Errorf("silence %s already exists in namespace %s; to change it, delete it first (picket delete silenced '%s' -n %s) and silence again",
				s.Metadata.Name, sess.namespace, s.Metadata.Name, sess.namespace)
		}
		return sess.explain(err)
	}
	msg := fmt.Sprintf("Created silence %s in namespace %s", s.Metadata.Name, sess.namespace)
	if s.Begin > now.Unix() {
		msg += ", from " + time.Unix(s.Begin, 0).UTC().Format(time.RFC3339)
	}
	switch {
	case s.ExpireAt > 0:
		msg += ", until " + time.Unix(s.ExpireAt, 0).UTC().Format(time.RFC3339)
	case !s.ExpireOnResolve:
		msg += ", until deleted"
	}
	if s.ExpireOnResolve {
		msg += ", or until the check resolves"
	}
	fmt.Fprintln(env.Stdout, msg)
	return nil
}

// silenceSeconds reads a positive number of seconds or a Go duration.
func silenceSeconds(v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 1 {
			return 0, fmt.Errorf("must be at least 1 second")
		}
		return n, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("not a duration of at least 1s; write it like 90, 30m or 2h")
	}
	return int64(d / time.Second), nil
}

// parseBegin reads an RFC 3339 time, a time of day (today, UTC; tomorrow when already
// past), a delay from now (+30m) or unix seconds.
func parseBegin(v string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(v, "+") {
		d, err := time.ParseDuration(v[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("not a delay such as +30m")
		}
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 1e9 {
		return time.Unix(n, 0), nil
	}
	if c, err := time.Parse("15:04", v); err == nil {
		u := now.UTC()
		t := time.Date(u.Year(), u.Month(), u.Day(), c.Hour(), c.Minute(), 0, 0, time.UTC)
		if t.Before(u) {
			t = t.Add(24 * time.Hour)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("not a time; use RFC 3339 (2030-01-02T15:04:05Z), a time of day in UTC (22:00) or a delay (+30m)")
}
