package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	dashboardsDir = "../../config/grafana/dashboards"
	alertsFile    = "../../config/prometheus/alerts.yaml"
	metricsDoc    = "../../docs/metrics.md"
)

var metricRE = regexp.MustCompile(`rsf_[a-z_]+`)

// referencedMetrics returns the rsf_* metric names in s, with the
// _bucket/_sum/_count suffixes of histogram series removed.
func referencedMetrics(s string) []string {
	var out []string
	for _, m := range metricRE.FindAllString(s, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(m, suffix) {
				m = strings.TrimSuffix(m, suffix)
				break
			}
		}
		out = append(out, m)
	}
	return out
}

func exported() map[string]bool {
	m := map[string]bool{}
	for _, n := range Names() {
		m[n] = true
	}
	return m
}

// collectStrings gathers every string value of a decoded JSON document,
// along with the "expr" strings separately.
func collectStrings(v any, all, exprs *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && k == "expr" {
				*exprs = append(*exprs, s)
			}
			collectStrings(val, all, exprs)
		}
	case []any:
		for _, val := range x {
			collectStrings(val, all, exprs)
		}
	case string:
		*all = append(*all, x)
	}
}

type panel struct {
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func TestDashboardsReferenceOnlyExportedMetrics(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"redis-cache-overview.json", "redis-formation-health.json"}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("dashboards = %v, want %v", got, want)
	}

	known := exported()
	uids, titles := map[string]string{}, map[string]string{}
	used := map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: not valid JSON: %v", f, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: missing uid or title", f)
		}
		if prev, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q already used by %s", f, d.UID, prev)
		}
		uids[d.UID] = f
		if prev, dup := titles[d.Title]; dup {
			t.Errorf("%s: title %q already used by %s", f, d.Title, prev)
		}
		titles[d.Title] = f
		if d.SchemaVersion < 36 {
			t.Errorf("%s: schemaVersion %d, want a current one (>= 36)", f, d.SchemaVersion)
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		if !vars["namespace"] || !vars["datasource"] {
			t.Errorf("%s: templating lacks $namespace or $datasource: %v", f, vars)
		}

		var all, exprs []string
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		collectStrings(doc, &all, &exprs)

		// Every non-row panel queries something, and has a position.
		var walk func([]panel)
		ids := 0
		walk = func(ps []panel) {
			for _, p := range ps {
				ids++
				if p.GridPos == nil {
					t.Errorf("%s: panel %q has no gridPos", f, p.Title)
				}
				if p.Type == "row" {
					walk(p.Panels)
					continue
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no targets", f, p.Title)
				}
				for _, tg := range p.Targets {
					if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
						t.Errorf("%s: panel %q has a target without expr or refId", f, p.Title)
					}
					if len(referencedMetrics(tg.Expr)) == 0 {
						t.Errorf("%s: panel %q queries no rsf_ metric: %s", f, p.Title, tg.Expr)
					}
				}
			}
		}
		walk(d.Panels)
		if ids == 0 || len(exprs) == 0 {
			t.Errorf("%s: no panels/expressions", f)
		}

		// All strings, not only expr: template variable queries count too.
		for _, s := range all {
			for _, m := range referencedMetrics(s) {
				used[m] = true
				if !known[m] {
					t.Errorf("%s references %s, which the code does not export (in: %s)", f, m, s)
				}
			}
		}
	}

	// The seed's cache overview: a hit-rate stat per subsystem.
	raw, _ := os.ReadFile(filepath.Join(dashboardsDir, "redis-cache-overview.json"))
	for _, sub := range []string{"rate_limiter", "chat_pubsub", "presence"} {
		if !strings.Contains(string(raw), `subsystem=\"`+sub+`\"`) {
			t.Errorf("cache overview has no panel for subsystem %s", sub)
		}
	}
	// The formation health dashboard shows every operator metric.
	for _, n := range Names() {
		if !used[n] {
			t.Errorf("no dashboard shows %s", n)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(raw, &rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	known := exported()
	alerts := map[string]string{} // name -> expr
	severities := map[string]string{}
	for _, g := range rf.Groups {
		if g.Name == "" {
			t.Error("a group has no name")
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule is not an alert (record %q)", g.Name, r.Record)
				continue
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = r.Expr
			sev := r.Labels["severity"]
			if sev != "warning" && sev != "page" {
				t.Errorf("alert %s: severity %q, want warning or page", r.Alert, sev)
			}
			severities[r.Alert] = sev
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			refs := referencedMetrics(r.Expr)
			if len(refs) == 0 {
				t.Errorf("alert %s: expr uses no rsf_ metric: %s", r.Alert, r.Expr)
			}
			for _, s := range append([]string{r.Expr}, r.Annotations["description"], r.Annotations["summary"]) {
				for _, m := range referencedMetrics(s) {
					if !known[m] {
						t.Errorf("alert %s references %s, which the code does not export", r.Alert, m)
					}
				}
			}
		}
	}

	// The alerts the ADR and the issue ask for.
	type need struct {
		severity string
		contains []string
	}
	for name, n := range map[string]need{
		"RSFRedisMemoryHigh":       {"warning", []string{MemberMemoryUsedRatio, "0.75"}},
		"RSFRedisMemoryCritical":   {"page", []string{MemberMemoryUsedRatio, "0.90"}},
		"RSFRedisNoMaster":         {"page", []string{FormationMasterPresent}},
		"RSFRedisQuorumLost":       {"page", []string{FormationQuorumOK}},
		"RSFRedisFailoverHappened": {"warning", []string{"increase(" + FormationFailoversTotal}},
		"RSFRedisCanaryFailing":    {"page", []string{FormationCanarySuccess}},
	} {
		expr, ok := alerts[name]
		if !ok {
			t.Errorf("alert %s missing", name)
			continue
		}
		if severities[name] != n.severity {
			t.Errorf("alert %s: severity %s, want %s", name, severities[name], n.severity)
		}
		for _, c := range n.contains {
			if !strings.Contains(expr, c) {
				t.Errorf("alert %s: expr %q lacks %q", name, expr, c)
			}
		}
	}
}

// TestMetricsDocumented keeps docs/metrics.md in step with Names().
func TestMetricsDocumented(t *testing.T) {
	raw, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	known := exported()
	for _, n := range Names() {
		if !strings.Contains(doc, "`"+n+"`") {
			t.Errorf("docs/metrics.md does not document %s", n)
		}
	}
	for _, m := range referencedMetrics(doc) {
		if !known[m] {
			t.Errorf("docs/metrics.md mentions %s, which the code does not export", m)
		}
	}
}

func TestReferencedMetrics(t *testing.T) {
	got := referencedMetrics(`histogram_quantile(0.9, sum by (le) (rate(rsf_formation_failover_duration_seconds_bucket[5m]))) / rsf_cache_hits_total + rsf_formation_canary_latency_seconds_count`)
	want := []string{FormationFailoverDuration, CacheHitsTotal, FormationCanaryLatency}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
}
