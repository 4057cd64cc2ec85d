package dashboard

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Series is one line of a panel.
type Series struct {
	Name   string
	Times  []time.Time
	Values []float64
}

// PanelData is a panel's series over a time range.
type PanelData struct {
	Title, Unit string
	Series      []Series
}

// Fetch runs a panel's queries over r.
func Fetch(ctx context.Context, api promv1.API, p Panel, s Scope, r promv1.Range) (PanelData, error) {
	out := PanelData{Title: p.Title, Unit: p.FieldConfig.Defaults.Unit}
	for _, t := range p.Targets {
		q, err := s.Expand(t.Expr)
		if err != nil {
			return out, err
		}
		v, _, _, err := api.QueryRange(ctx, q, r)
		if err != nil {
			return out, fmt.Errorf("panel %q: %s: %w", p.Title, q, err)
		}
		matrix, ok := v.(model.Matrix)
		if !ok {
			return out, fmt.Errorf("panel %q: %s: a %s, not a range", p.Title, q, v.Type())
		}
		for _, ss := range matrix {
			labels := make(map[string]string, len(ss.Metric))
			for k, v := range ss.Metric {
				labels[string(k)] = string(v)
			}
			line := Series{Name: Legend(t.LegendFormat, labels)}
			for _, pt := range ss.Values {
				line.Times = append(line.Times, pt.Timestamp.Time())
				line.Values = append(line.Values, float64(pt.Value))
			}
			out.Series = append(out.Series, line)
		}
	}
	return out, nil
}

// crowded is the number of lines above which a panel's lines that stay at
// 0 are left out of the picture (e.g. the 39 Sentinel event types).
const crowded = 4

// units maps Grafana units to an axis label and a factor.
var units = map[string]struct {
	label  string
	factor float64
}{
	"percentunit": {"%", 100},
	"bytes":       {"bytes", 1},
	"s":           {"seconds", 1},
}

// Gnuplot returns a gnuplot script that draws the panels one above the
// other into a PNG file, width x height pixels, with title on top, all over
// the same time axis from start to end.
func Gnuplot(title string, panels []PanelData, start, end time.Time, png string, width, height int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "set terminal pngcairo noenhanced size %d,%d font 'sans,9'\n", width, height)
	fmt.Fprintf(&b, "set output %s\n", quote(png))
	fmt.Fprintf(&b, "set multiplot layout %d,1 title %s\n", max(len(panels), 1), quote(title))
	// Fixed margins keep the panels' time axes aligned whatever their
	// legends' widths.
	b.WriteString("set xdata time\nset timefmt '%s'\nset format x '%H:%M:%S'\nset xlabel 'UTC'\nset grid\n" +
		"set lmargin at screen 0.08\nset rmargin at screen 0.68\nset key at screen 0.70, graph 1 left top font ',8' spacing 0.9\nset yrange [0:*]\n")
	fmt.Fprintf(&b, "set xrange ['%d':'%d']\n", start.Unix(), end.Unix())
	for i, p := range panels {
		u, ok := units[p.Unit]
		if !ok {
			u.factor = 1
		}
		var plots []string
		for j, s := range p.Series {
			if len(p.Series) > crowded && allZero(s.Values) {
				continue
			}
			block := fmt.Sprintf("$p%ds%d", i, j)
			fmt.Fprintf(&b, "%s << EOD\n", block)
			for k, v := range s.Values {
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					fmt.Fprintf(&b, "%d %g\n", s.Times[k].Unix(), v*u.factor)
				}
			}
			b.WriteString("EOD\n")
			plots = append(plots, fmt.Sprintf("%s using 1:2 with lines lw 2 title %s", block, quote(s.Name)))
		}
		fmt.Fprintf(&b, "set title %s\nset ylabel %s\n", quote(p.Title), quote(u.label))
		if len(plots) == 0 {
			// An empty panel still takes its place, saying so.
			b.WriteString("set label 1 'no data' at graph 0.5,0.5 center\nplot 1/0 notitle\nunset label 1\n")
			continue
		}
		fmt.Fprintf(&b, "plot %s\n", strings.Join(plots, ", \\\n     "))
	}
	b.WriteString("unset multiplot\n")
	return b.String()
}

// quote is a gnuplot single-quoted string: nothing in it is interpreted
// but the doubled quote.
func quote(s string) string {
	return "'" + strings.ReplaceAll(strings.NewReplacer("\n", " ", "\r", " ").Replace(s), "'", "''") + "'"
}

func allZero(values []float64) bool {
	for _, v := range values {
		if v != 0 {
			return false
		}
	}
	return true
}

// Render runs gnuplot (Debian's gnuplot-nox) on a script.
func Render(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	return nil
}

// HealthDashboard is the formation health dashboard, from the repository's
// root.
const HealthDashboard = "config/grafana/dashboards/redis-formation-health.json"

// KeyPanels are the health dashboard's panels docs/monitoring.md shows.
var KeyPanels = []string{"Health flags", "Members and sentinels", "Sentinel events by type", "Memory used / maxmemory", "Canary latency"}

// Picture draws the key panels of the dashboard file for the scope's
// formation over the last span into a PNG file.
func Picture(ctx context.Context, api promv1.API, file string, s Scope, span time.Duration, png string) error {
	d, err := Load(file)
	if err != nil {
		return err
	}
	end := time.Now()
	r := promv1.Range{Start: end.Add(-span), End: end, Step: max(span/300, time.Second)}
	var panels []PanelData
	for _, title := range KeyPanels {
		p := d.Panel(title)
		if p == nil {
			return fmt.Errorf("%s: no panel %q", file, title)
		}
		data, err := Fetch(ctx, api, *p, s, r)
		if err != nil {
			return err
		}
		panels = append(panels, data)
	}
	title := fmt.Sprintf("%s: %s/%s, %s to %s UTC", d.Title, s.Namespace, s.Formation, r.Start.UTC().Format("2006-01-02 15:04:05"), r.End.UTC().Format("15:04:05"))
	return Render(ctx, Gnuplot(title, panels, r.Start, r.End, png, 1000, 240*len(panels)))
}
