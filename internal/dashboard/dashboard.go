// Package dashboard reads the project's Grafana dashboards
// (config/grafana/dashboards) and draws their time series panels from a
// Prometheus server with gnuplot, so that the queries users see in Grafana
// are the ones the tests run and the docs' pictures show.
package dashboard

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Dashboard is the part of a Grafana dashboard the project relies on.
type Dashboard struct {
	Title     string     `json:"title"`
	Panels    []Panel    `json:"panels"`
	Variables []Variable `json:"-"`
}

// Panel is one panel; rows are flattened away by Load.
type Panel struct {
	Type        string   `json:"type"`
	Title       string   `json:"title"`
	Targets     []Target `json:"targets"`
	Panels      []Panel  `json:"panels"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// Target is one query of a panel.
type Target struct {
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
}

// Variable is a templating variable; Definition is its query, e.g.
// label_values(rsf_formation_ready, namespace).
type Variable struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Definition string `json:"definition"`
}

// Load reads a dashboard file.
func Load(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Dashboard
		Templating struct {
			List []Variable `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := doc.Dashboard
	d.Variables = doc.Templating.List
	d.Panels = flatten(d.Panels)
	return &d, nil
}

// flatten lists the panels of collapsed rows in place of their row.
func flatten(panels []Panel) []Panel {
	var out []Panel
	for _, p := range panels {
		if p.Type == "row" {
			out = append(out, flatten(p.Panels)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// Queries returns every panel's queries, in panel order.
func (d *Dashboard) Queries() []string {
	var out []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			if t.Expr != "" {
				out = append(out, t.Expr)
			}
		}
	}
	return out
}

// Panel returns the panel titled title, or nil.
func (d *Dashboard) Panel(title string) *Panel {
	for i := range d.Panels {
		if d.Panels[i].Title == title {
			return &d.Panels[i]
		}
	}
	return nil
}

// Scope is what Grafana substitutes for the variables the dashboards use.
type Scope struct {
	Namespace, Formation string
	// RateInterval and Range are Prometheus durations, e.g. "1m".
	RateInterval, Range string
}

var unknownVariable = regexp.MustCompile(`\$\{?\w+`)

// Expand substitutes the scope into a query: namespace and formation as
// regular expressions matching exactly that name (the dashboards use =~).
// A variable it does not know is an error.
func (s Scope) Expand(query string) (string, error) {
	out := strings.NewReplacer(
		"$namespace", regexp.QuoteMeta(s.Namespace),
		"$formation", regexp.QuoteMeta(s.Formation),
		"$__rate_interval", s.RateInterval,
		"$__range", s.Range,
	).Replace(query)
	if v := unknownVariable.FindString(out); v != "" {
		return "", fmt.Errorf("%q: unknown variable %s", query, v)
	}
	return out, nil
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// LabelValuesQuery splits a label_values(selector, label) variable query.
func LabelValuesQuery(definition string) (selector, label string, err error) {
	m := labelValues.FindStringSubmatch(strings.TrimSpace(definition))
	if m == nil {
		return "", "", fmt.Errorf("%q is not label_values(selector, label)", definition)
	}
	return m[1], m[2], nil
}

var legendLabel = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// Legend renders a target's legendFormat for a series' labels, as Grafana
// does; an empty format gives the labels themselves.
func Legend(format string, labels map[string]string) string {
	if format == "" {
		var parts []string
		for k, v := range labels {
			parts = append(parts, k+"="+v)
		}
		slices.Sort(parts)
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return legendLabel.ReplaceAllStringFunc(format, func(m string) string {
		return labels[legendLabel.FindStringSubmatch(m)[1]]
	})
}
