package dashboard

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadFlattensRowsAndReadsVariables(t *testing.T) {
	d, err := Load(filepath.Join("..", "..", HealthDashboard))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			t.Errorf("row %q left in the panels", p.Title)
		}
	}
	for _, title := range KeyPanels {
		if p := d.Panel(title); p == nil || len(p.Targets) == 0 {
			t.Errorf("key panel %q missing or without queries", title)
		}
	}
	if len(d.Queries()) < len(d.Panels) {
		t.Errorf("%d queries for %d panels", len(d.Queries()), len(d.Panels))
	}
	var names []string
	for _, v := range d.Variables {
		names = append(names, v.Name)
	}
	if got := strings.Join(names, ","); got != "datasource,namespace,formation" {
		t.Errorf("variables %s", got)
	}
}

func TestExpand(t *testing.T) {
	s := Scope{Namespace: "team.a", Formation: "cache", RateInterval: "1m", Range: "15m"}
	for _, c := range []struct{ in, want, err string }{
		{`rsf_formation_ready{namespace=~"$namespace", formation=~"$formation"}`, `rsf_formation_ready{namespace=~"team\.a", formation=~"cache"}`, ""},
		{`rate(x[$__rate_interval]) + increase(y[$__range])`, `rate(x[1m]) + increase(y[15m])`, ""},
		{`x{pod=~"$pod"}`, "", "unknown variable $pod"},
		{`x{pod=~"${pod}"}`, "", "unknown variable ${pod"},
	} {
		got, err := s.Expand(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Expand(%s) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Expand(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
}

func TestLabelValuesQuery(t *testing.T) {
	sel, label, err := LabelValuesQuery(`label_values(rsf_formation_ready{namespace=~"$namespace"}, formation)`)
	if err != nil || sel != `rsf_formation_ready{namespace=~"$namespace"}` || label != "formation" {
		t.Errorf("got %q %q %v", sel, label, err)
	}
	if _, _, err := LabelValuesQuery("query_result(up)"); err == nil {
		t.Error("query_result accepted")
	}
}

func TestLegend(t *testing.T) {
	labels := map[string]string{"namespace": "prod", "formation": "cache", "member": "cache-1"}
	for format, want := range map[string]string{
		"{{namespace}}/{{formation}} p50": "prod/cache p50",
		"{{ member }}":                    "cache-1",
		"{{missing}}x":                    "x",
		"":                                "{formation=cache, member=cache-1, namespace=prod}",
	} {
		if got := Legend(format, labels); got != want {
			t.Errorf("Legend(%q) = %q, want %q", format, got, want)
		}
	}
}

func TestGnuplot(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(1_800_000_000+s), 0) }
	zero := Series{Name: "quiet", Times: []time.Time{at(0), at(1)}, Values: []float64{0, 0}}
	panels := []PanelData{
		{Title: "Memory used / maxmemory", Unit: "percentunit", Series: []Series{{Name: "it's", Times: []time.Time{at(0), at(1)}, Values: []float64{0.5, 0.8}}}},
		{Title: "Sentinel events", Series: []Series{zero, zero, zero, zero, {Name: "+switch-master", Times: []time.Time{at(0)}, Values: []float64{1}}}},
		{Title: "Few lines", Series: []Series{zero}},
		{Title: "Empty"},
	}
	script := Gnuplot("t", panels, at(0), at(60), "/tmp/x.png", 800, 600)
	for _, want := range []string{
		"set multiplot layout 4,1 title 't'",
		"1800000000 50\n1800000001 80\n", // percentunit drawn in %
		"title 'it''s'",                  // quotes doubled
		"title '+switch-master'",
		"title 'quiet'", // a lone zero line is drawn
		"set label 1 'no data'",
		"set xrange ['1800000000':'1800000060']", // one time axis for all panels
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	// In the crowded panel, the four zero lines are left out.
	if n := strings.Count(script, "title 'quiet'"); n != 1 {
		t.Errorf("%d zero lines drawn, want only the uncrowded panel's", n)
	}
}

// FuzzQuote: whatever a label value holds (formation and member names come
// from users), it stays inside one gnuplot string on one line.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"cache-1", "it's", "a\nb", `'; system 'rm -rf /'`, "''"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := quote(s)
		if strings.ContainsAny(q, "\n\r") || !strings.HasPrefix(q, "'") || !strings.HasSuffix(q, "'") || len(q) < 2 {
			t.Fatalf("quote(%q) = %q", s, q)
		}
		if inner := q[1 : len(q)-1]; strings.Count(strings.ReplaceAll(inner, "''", ""), "'") != 0 {
			t.Fatalf("quote(%q) = %q: a lone quote ends the string early", s, q)
		}
	})
}
