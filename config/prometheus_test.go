package config_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

const (
	alertsFile     = "prometheus/alerts.yaml"
	alertsTestFile = "prometheus/alerts_test.yaml"
)

// promtool is the path of promtool (Debian package prometheus, installed by
// `make test-deps`); without it the test is skipped, or fails under CI.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool", err)
	}
	return path
}

func TestAlertRulesPassPromtool(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", alertsTestFile},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			t.Parallel()
			if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

func TestPrometheusConfigRendersAndPassesPromtool(t *testing.T) {
	bin := promtool(t)
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	// RenderPrometheusConfig refuses a template with a placeholder it does
	// not fill, so an error here also means a ${...} would have been left.
	rendered, err := testenv.RenderPrometheusConfig("5s", rules, "127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(cfg, rendered, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, out, rendered)
	}
}

// ruleChange replaces old, which must occur exactly once in an alert's
// rule, with new: a wrong value the unit tests have to catch.
type ruleChange struct{ old, new string }

// alertMutations are the changes to the rule of one alert.
type alertMutations struct {
	alert   string
	changes []ruleChange
}

// ruleMutations move every threshold, `for` and window of alerts.yaml a
// little (a `for` or a window by one 15 s evaluation interval), flip the
// comparisons and drop what the rules rely on (the phase of reconcile errors,
// the round() against extrapolation), one change at a time.
var ruleMutations = []alertMutations{
	{"RSFRedisMemoryHigh", []ruleChange{
		{"> 0.75", "> 0.70"}, {"> 0.75", "> 0.80"}, {"> 0.75", ">= 0.75"},
		{"for: 10m", "for: 9m45s"}, {"for: 10m", "for: 10m15s"},
	}},
	{"RSFRedisMemoryCritical", []ruleChange{
		{"> 0.90", "> 0.85"}, {"> 0.90", "> 0.95"}, {"> 0.90", ">= 0.90"},
		{"for: 5m", "for: 4m45s"}, {"for: 5m", "for: 5m15s"},
	}},
	{"RSFRedisNoMaster", []ruleChange{
		{"== 0", "== 1"},
		{"for: 1m", "for: 45s"}, {"for: 1m", "for: 1m15s"},
	}},
	{"RSFRedisQuorumLost", []ruleChange{
		{"== 0", "== 1"},
		{"for: 2m", "for: 1m45s"}, {"for: 2m", "for: 2m15s"},
	}},
	{"RSFRedisFailoverHappened", []ruleChange{
		{"> 0", "> 1"},
		{"[15m]", "[14m45s]"}, {"[15m]", "[15m15s]"},
	}},
	{"RSFRedisCanaryFailing", []ruleChange{
		{"== 0", "== 1"},
		{"for: 3m", "for: 2m45s"}, {"for: 3m", "for: 3m15s"},
	}},
	{"RSFRedisReconcileErrors", []ruleChange{
		{"> 3", "> 2"}, {"> 3", "> 4"},
		{"[15m]", "[14m45s]"}, {"[15m]", "[15m15s]"},
		{"by (namespace, formation, phase)", "by (namespace, formation)"},
		{"round(sum", "(sum"},
	}},
	{"RSFOperatorPanicRecovered", []ruleChange{
		{"> 0", "> 1"},
		{"[1h]", "[59m45s]"}, {"[1h]", "[1h15s]"},
	}},
	{"RSFRedisCacheFallbacks", []ruleChange{
		{"> 0.05", "> 0.04"}, {"> 0.05", "> 0.06"}, {"> 0.05", ">= 0.05"},
		{"for: 10m", "for: 9m45s"}, {"for: 10m", "for: 10m15s"},
	}},
}

// nextRuleRE finds where the next rule (or group) starts in alerts.yaml.
var nextRuleRE = regexp.MustCompile(`(?m)^[ \t]*- (alert|name): `)

// mutate applies c to the rule of alert in rules, the text of alerts.yaml.
func mutate(rules, alert string, c ruleChange) (string, error) {
	header := "- alert: " + alert + "\n"
	start := strings.Index(rules, header)
	if start < 0 {
		return "", fmt.Errorf("no alert %s in %s", alert, alertsFile)
	}
	end := len(rules)
	if next := nextRuleRE.FindStringIndex(rules[start+len(header):]); next != nil {
		end = start + len(header) + next[0]
	}
	rule := rules[start:end]
	if n := strings.Count(rule, c.old); n != 1 {
		return "", fmt.Errorf("%q occurs %d times in the rule of %s in %s, want once", c.old, n, alert, alertsFile)
	}
	return rules[:start] + strings.Replace(rule, c.old, c.new, 1) + rules[end:], nil
}

// ruleTests is alerts_test.yaml, with its test groups as they are written
// and the alerts each group checks.
type ruleTests struct {
	file   map[string]json.RawMessage
	groups []json.RawMessage
	checks [][]string
}

func readRuleTests(t *testing.T) ruleTests {
	t.Helper()
	raw, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.Unmarshal(raw, &rt.file); err != nil {
		t.Fatalf("%s: %v", alertsTestFile, err)
	}
	if err := json.Unmarshal(rt.file["tests"], &rt.groups); err != nil {
		t.Fatalf("%s: tests: %v", alertsTestFile, err)
	}
	for _, g := range rt.groups {
		var group struct {
			AlertRuleTest []struct{ Alertname string } `json:"alert_rule_test"`
		}
		if err := json.Unmarshal(g, &group); err != nil {
			t.Fatalf("%s: a test group: %v", alertsTestFile, err)
		}
		var alerts []string
		for _, c := range group.AlertRuleTest {
			alerts = append(alerts, c.Alertname)
		}
		rt.checks = append(rt.checks, alerts)
	}
	return rt
}

// testsOf returns the test file with only the groups that check alert: the
// others cannot notice a change to its rule, and leaving them out makes each
// promtool run several times shorter.
func (rt ruleTests) testsOf(t *testing.T, alert string) []byte {
	t.Helper()
	var kept []json.RawMessage
	for i, g := range rt.groups {
		if slices.Contains(rt.checks[i], alert) {
			kept = append(kept, g)
		}
	}
	if len(kept) == 0 {
		t.Fatalf("no test group of %s checks %s", alertsTestFile, alert)
	}
	file := maps.Clone(rt.file)
	var err error
	if file["tests"], err = json.Marshal(kept); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	if out, err = yaml.JSONToYAML(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryAlertIsUnitTestedAndMutated keeps a new alert from going without
// promtool tests, or without mutations that prove those tests pin it.
func TestEveryAlertIsUnitTestedAndMutated(t *testing.T) {
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert string }
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	rt := readRuleTests(t)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if !slices.ContainsFunc(rt.checks, func(alerts []string) bool { return slices.Contains(alerts, r.Alert) }) {
				t.Errorf("%s: no test group of %s checks it", r.Alert, alertsTestFile)
			}
			if !slices.ContainsFunc(ruleMutations, func(m alertMutations) bool { return m.alert == r.Alert }) {
				t.Errorf("%s: no entry in ruleMutations", r.Alert)
			}
		}
	}
}

// testRules runs `promtool test rules` on tests next to rules, written as
// alerts.yaml (the name the tests' rule_files refers to).
func testRules(t *testing.T, bin, rules string, tests []byte) (string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alerts.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	testFile := filepath.Join(dir, "alerts_test.yaml")
	if err := os.WriteFile(testFile, tests, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "test", "rules", testFile).CombinedOutput()
	return string(out), err
}

// TestAlertRuleMutationsFailTheUnitTests proves that alerts_test.yaml pins
// the rules: each mutation must make the tests of its alert fail on an
// expected alert.
func TestAlertRuleMutationsFailTheUnitTests(t *testing.T) {
	bin := promtool(t)
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	rules := string(raw)
	rt := readRuleTests(t)
	for _, m := range ruleMutations {
		t.Run(m.alert, func(t *testing.T) {
			t.Parallel()
			tests := rt.testsOf(t, m.alert)
			// The unmutated rules must pass, or each change could fail for
			// a wrong reason (a rule file the copy does not find, say).
			if out, err := testRules(t, bin, rules, tests); err != nil {
				t.Fatalf("the unmutated rules fail the tests of %s: %v\n%s", m.alert, err, out)
			}
			for _, c := range m.changes {
				t.Run(c.old+" to "+c.new, func(t *testing.T) {
					t.Parallel()
					mutated, err := mutate(rules, m.alert, c)
					if err != nil {
						t.Fatal(err)
					}
					out, err := testRules(t, bin, mutated, tests)
					switch {
					case err == nil:
						t.Fatalf("the tests of %s pass with %q changed to %q: they do not pin that value", m.alert, c.old, c.new)
					// An expectation's report has exp: and got:; a rule
					// promtool cannot load has neither, and proves nothing.
					case !strings.Contains(out, "exp:"):
						t.Fatalf("promtool failed, but not on an expected alert: %v\n%s", err, out)
					}
				})
			}
		})
	}
}
