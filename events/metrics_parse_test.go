package events

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	const ex = 1_700_000_000
	tag := func(kv ...string) []MetricTag {
		out := []MetricTag{}
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, MetricTag{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	cases := []struct {
		format, output string
		want           []MetricPoint
		err            bool
	}{
		{MetricsNagios, "PING OK - Packet loss = 0%, RTA = 0.80 ms | rta=0.8ms;100;500;0 pl=0%;20;60;0",
			[]MetricPoint{{"rta", 0.8, ex, tag()}, {"pl", 0, ex, tag()}}, false},
		{MetricsNagios, "DISK OK | '/ used'=12.5GB;;;0;100 'it''s'=3\nlong output\nmore | inodes=42c", []MetricPoint{
			{"/ used", 12.5, ex, tag()}, {"it's", 3, ex, tag()}, {"inodes", 42, ex, tag()}}, false},
		{MetricsNagios, "no perfdata here", nil, false},
		{MetricsNagios, "x | bad novalue=U ok=1", []MetricPoint{{"ok", 1, ex, tag()}}, true},
		{MetricsGraphite, "servers.web1.load 0.42 1700000100\nservers.web1.users 3\n", []MetricPoint{
			{"servers.web1.load", 0.42, 1700000100, tag()}, {"servers.web1.users", 3, ex, tag()}}, false},
		{MetricsGraphite, "a.b notanumber 1", nil, true},
		{MetricsInfluxDB, `cpu,host=web1,region=eu\ west usage=12.5,idle=80i,up=t,msg="a b, c" 1700000200000000000`, []MetricPoint{
			{"cpu.usage", 12.5, 1700000200, tag("host", "web1", "region", "eu west")},
			{"cpu.idle", 80, 1700000200, tag("host", "web1", "region", "eu west")},
			{"cpu.up", 1, 1700000200, tag("host", "web1", "region", "eu west")}}, false},
		{MetricsInfluxDB, "mem free=1024", []MetricPoint{{"mem.free", 1024, ex, tag()}}, false},
		{MetricsInfluxDB, "justone", nil, true},
		{MetricsOpenTSDB, "put sys.cpu.user 1700000300 42.5 host=web1 cpu=0\nsys.load 1700000300000 1", []MetricPoint{
			{"sys.cpu.user", 42.5, 1700000300, tag("host", "web1", "cpu", "0")}, {"sys.load", 1, 1700000300, tag()}}, false},
		{MetricsOpenTSDB, "sys.cpu 1 2 badtag", nil, true},
		{MetricsPrometheus, "# HELP x\nhttp_requests_total{method=\"post\",code=\"200\"} 1027 1700000400000\nup 1", []MetricPoint{
			{"http_requests_total", 1027, 1700000400, tag("method", "post", "code", "200")}, {"up", 1, ex, tag()}}, false},
	}
	for i, c := range cases {
		got, err := ParseMetrics(c.format, c.output, ex)
		if (err != nil) != c.err {
			t.Errorf("%d %s: err = %v, want error %v", i, c.format, err, c.err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%d %s:\n got %+v\nwant %+v", i, c.format, got, c.want)
		}
	}
}

func TestExtractMetricsTags(t *testing.T) {
	ev := testEvent(0)
	ev.Check.OutputMetricFormat = MetricsGraphite
	ev.Check.Output = "a.b 1 1700000000"
	ev.Check.OutputMetricHandlers = []string{"influx"}
	ev.Check.OutputMetricTags = []MetricTag{{Name: "env", Value: "{{ .labels.env }}"}, {Name: "dc", Value: "{{ .labels.dc | default \"x1\" }}"}, {Name: "fixed", Value: "v"}}
	if err := ExtractMetrics(ev); err != nil {
		t.Fatal(err)
	}
	if ev.Metrics == nil || len(ev.Metrics.Points) != 1 || !reflect.DeepEqual(ev.Metrics.Handlers, []string{"influx"}) {
		t.Fatalf("metrics %+v", ev.Metrics)
	}
	want := []MetricTag{{"env", "prod"}, {"dc", "x1"}, {"fixed", "v"}}
	if !reflect.DeepEqual(ev.Metrics.Points[0].Tags, want) {
		t.Fatalf("tags %+v, want %+v", ev.Metrics.Points[0].Tags, want)
	}
	// Points an agent extracted itself are kept.
	ev.Check.Output = "other 2"
	if err := ExtractMetrics(ev); err != nil || ev.Metrics.Points[0].Name != "a.b" {
		t.Fatalf("re-extracted: %v %+v", err, ev.Metrics.Points)
	}
}

func FuzzParseMetrics(f *testing.F) {
	for _, s := range []string{
		"OK | a=1;2;3 'b c'=4ms", "a.b.c 1 1700000000", `m,t=v\ x f=1i,g="s" 1700000000000`,
		"put x 1700000000 1 a=b", `x{a="b",c="d\"e"} 1 1`, "", "|", "a=", "m f=", `m,=x f=1`,
	} {
		for _, format := range []string{MetricsNagios, MetricsGraphite, MetricsInfluxDB, MetricsOpenTSDB, MetricsPrometheus} {
			f.Add(format, s)
		}
	}
	f.Fuzz(func(t *testing.T, format, output string) {
		points, _ := ParseMetrics(format, output, 1_700_000_000)
		for _, p := range points {
			if p.Name == "" {
				t.Fatalf("a point without a name from %q", output)
			}
			if strings.Contains(format, "nagios") && strings.ContainsAny(p.Name, " \t") && !strings.Contains(output, "'") {
				t.Fatalf("unquoted nagios label with a space: %q", p.Name)
			}
			if p.Tags == nil {
				t.Fatalf("nil tags (JSON null) from %q", output)
			}
		}
	})
}
