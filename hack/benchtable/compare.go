package main

// -compare mode: the output of hack/bench-compare.sh, where two variants of
// the operator (a base revision and the working tree) ran the same
// benchmarks alternately in one run, becomes the "Before and after"
// section of docs/benchmarks.md.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

const (
	compareBegin = "<!-- bench-compare:begin -->"
	compareEnd   = "<!-- bench-compare:end -->"
)

var (
	// variantMarker starts the output of one variant's run:
	// "### VARIANT before ApplyToReady f81b8ca" (hack/bench-compare.sh) or
	// "### VARIANT before BENCH ApplyToReady 19:12:10" (older runs).
	variantMarker = regexp.MustCompile(`^### VARIANT (before|after)(\s|$)`)
	// Any other "### " line (e.g. "### DONE") ends the current variant.
	otherMarker = regexp.MustCompile(`^### `)

	resultsHeading = regexp.MustCompile(`(?m)^## Results[ \t]*$`)
	nextHeading    = regexp.MustCompile(`(?m)^## `)
)

// variants is the input split at the markers.
type variants struct {
	before, after string
	runs          map[string]int // variant -> number of marked runs
}

// splitVariants splits the input at its "### VARIANT" lines. Lines before
// the first marker (build output) and after another "### " line belong to
// neither variant; the markers themselves are dropped.
func splitVariants(r io.Reader) (*variants, error) {
	var before, after strings.Builder
	v := &variants{runs: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur *strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if m := variantMarker.FindStringSubmatch(line); m != nil {
			v.runs[m[1]]++
			cur = &before
			if m[1] == "after" {
				cur = &after
			}
			continue
		}
		if otherMarker.MatchString(line) {
			cur = nil
			continue
		}
		if cur != nil {
			cur.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, name := range []string{"before", "after"} {
		if v.runs[name] == 0 {
			return nil, fmt.Errorf("no \"### VARIANT %s\" line in the input: not hack/bench-compare.sh output?", name)
		}
	}
	v.before, v.after = before.String(), after.String()
	return v, nil
}

// compareRow is one figure of both variants ("" where a variant has no row).
type compareRow struct {
	figure, before, after, target string
}

// measuredRow says whether a row has a measurement (not "not measured …"
// for a benchmark that did not run, nor an unrecorded lab timing).
func measuredRow(r row) bool {
	return !strings.HasPrefix(r.measured, notMeasured) && r.measured != notRecorded
}

// compareRows pairs the figures of both variants by name, in evaluate()'s
// order, and keeps those at least one variant measured.
func compareRows(before, after []row) []compareRow {
	// Merge the two figure orders: each figure only one variant has goes
	// right after the figure it follows there.
	var order []string
	pos := map[string]int{}
	insert := func(at int, fig string) {
		order = append(order, "")
		copy(order[at+1:], order[at:])
		order[at] = fig
		for i, f := range order {
			pos[f] = i
		}
	}
	for _, rows := range [][]row{before, after} {
		next := 0
		for _, r := range rows {
			if i, ok := pos[r.figure]; ok {
				next = i + 1
				continue
			}
			insert(next, r.figure)
			next++
		}
	}
	index := func(rows []row) map[string]row {
		m := map[string]row{}
		for _, r := range rows {
			m[r.figure] = r
		}
		return m
	}
	b, a := index(before), index(after)
	var out []compareRow
	for _, fig := range order {
		rb, okb := b[fig]
		ra, oka := a[fig]
		mb, ma := okb && measuredRow(rb), oka && measuredRow(ra)
		if !mb && !ma {
			continue
		}
		c := compareRow{figure: fig, before: cell(rb, okb), after: cell(ra, oka)}
		c.target = rb.target
		if ma {
			c.target = ra.target
		}
		out = append(out, c)
	}
	return out
}

// cell is what one variant measured of a figure, with a missed target
// marked.
func cell(r row, ok bool) string {
	if !ok {
		return notMeasured
	}
	if r.met == yesNo(false) {
		return r.measured + " (target **not met**)"
	}
	return r.measured
}

func compareTable(label string, rows []compareRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| Figure | Before (%s) | After (this tree) | Target |\n| --- | --- | --- | --- |\n", escape(label))
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", escape(r.figure), escape(r.before), escape(r.after), escape(r.target))
	}
	return b.String()
}

// compareSection is the delimited "Before and after" block. tree names the
// working tree (its commit, "-dirty" when it differs from it), date when
// the section was written.
func compareSection(label, tree, date, note, table string, failures []string) string {
	var b strings.Builder
	b.WriteString(compareBegin + "\n## Before and after\n\n")
	sentence := fmt.Sprintf("`%s` (before) against the working tree at `%s` (after), measured on %s in one `make bench-compare` run in which the two variants alternated per benchmark (before, then after)", label, tree, date)
	if note = strings.TrimRight(strings.TrimSpace(note), "."); note != "" {
		sentence += "; conditions: " + note
	}
	b.WriteString(sentence + ".\n\n")
	b.WriteString(table)
	if len(failures) > 0 {
		b.WriteString("\nFailures in this run: " + escape(strings.Join(failures, "; ")) + "\n")
	}
	b.WriteString("\nOnly the figures at least one variant measured are listed; how each is measured is below. `make bench` keeps this section; `make bench-compare BASE=<rev>` replaces it (raw output in bin/bench-compare.out).\n")
	b.WriteString(compareEnd + "\n")
	return b.String()
}

// compareBlock is the delimited block of doc, through the end marker's line.
func compareBlock(doc string) (string, bool) {
	i := strings.Index(doc, compareBegin)
	if i < 0 {
		return "", false
	}
	j := strings.Index(doc[i:], compareEnd)
	if j < 0 {
		return "", false
	}
	return doc[i:i+j+len(compareEnd)] + "\n", true
}

// insertCompare puts block into doc: in place of an existing one, else
// right after the "## Results" section (at the end when there is none).
func insertCompare(doc, block string) (string, error) {
	if i := strings.Index(doc, compareBegin); i >= 0 {
		j := strings.Index(doc[i:], compareEnd)
		if j < 0 {
			return "", fmt.Errorf("%q without %q", compareBegin, compareEnd)
		}
		end := i + j + len(compareEnd)
		if strings.HasPrefix(doc[end:], "\n") {
			end++
		}
		return doc[:i] + block + doc[end:], nil
	}
	if strings.Contains(doc, compareEnd) {
		return "", fmt.Errorf("%q without %q", compareEnd, compareBegin)
	}
	if loc := resultsHeading.FindStringIndex(doc); loc != nil {
		if next := nextHeading.FindStringIndex(doc[loc[1]:]); next != nil {
			at := loc[1] + next[0]
			return doc[:at] + block + "\n" + doc[at:], nil
		}
	}
	if doc != "" {
		doc = strings.TrimRight(doc, "\n") + "\n\n"
	}
	return doc + block, nil
}

// workingTree is HEAD's short commit, with "-dirty" when a file other than
// skip (the document being written) differs from it or is untracked.
func workingTree(skip string) string {
	commit, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown commit"
	}
	tree := strings.TrimSpace(string(commit))
	status, err := exec.Command("git", "status", "--porcelain").Output()
	if err != nil {
		return tree + " (state unknown)"
	}
	rel := ""
	if top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output(); err == nil {
		if abs, err := filepath.Abs(skip); err == nil {
			if r, err := filepath.Rel(strings.TrimSpace(string(top)), abs); err == nil {
				rel = filepath.ToSlash(r)
			}
		}
	}
	if dirty(string(status), rel) {
		tree += "-dirty"
	}
	return tree
}

// dirty says whether `git status --porcelain` lists a path other than skip.
func dirty(status, skip string) bool {
	for _, line := range strings.Split(status, "\n") {
		if len(line) < 4 {
			continue
		}
		if path := strings.Trim(line[3:], `"`); path != skip {
			return true
		}
	}
	return false
}

// runCompare is the -compare mode: tree describes the after variant; it
// returns the exit code.
func runCompare(r io.Reader, stdout io.Writer, label, tree, out, note string) int {
	v, err := splitVariants(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		return 2
	}
	var rows [2][]row
	var failures []string
	for i, part := range []struct{ name, text string }{{"before", v.before}, {"after", v.after}} {
		in, err := parse(strings.NewReader(part.text))
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			return 2
		}
		rows[i] = evaluate(in)
		for _, f := range in.failures {
			failures = append(failures, part.name+": "+f)
		}
	}
	table := compareTable(label, compareRows(rows[0], rows[1]))
	fmt.Fprint(stdout, table)
	if out != "" {
		old, err := os.ReadFile(out)
		if err != nil && !os.IsNotExist(err) {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			return 2
		}
		doc := string(old)
		if doc == "" {
			doc = "# Benchmarks\n"
		}
		section := compareSection(label, tree, time.Now().UTC().Format("2006-01-02 15:04 MST"), note, table, failures)
		if doc, err = insertCompare(doc, section); err == nil {
			err = os.WriteFile(out, []byte(doc), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", out+":", err)
			return 2
		}
		fmt.Fprintf(os.Stderr, "benchtable: wrote the before/after section of %s\n", out)
	}
	if len(failures) > 0 {
		fmt.Fprintf(os.Stderr, "benchtable: failures in the input: %s\n", strings.Join(failures, "; "))
		return 1
	}
	return 0
}
