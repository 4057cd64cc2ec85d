package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// placeholderRE matches a ${NAME} placeholder (not the "${...}" of the
// template's header comment).
var placeholderRE = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*\}`)

// RenderPrometheusConfig renders config/prometheus/prometheus.yml, the
// Prometheus configuration of the lab and the monitoring e2e test: interval
// is the scrape and evaluation interval ("5s"), rulesPath the absolute path
// of the alert rules, operatorTarget the host:port of the operator's metrics
// endpoint. It fails when the template lacks one of its placeholders or has
// one it does not fill, so a renamed placeholder is noticed rather than
// handed to Prometheus.
func RenderPrometheusConfig(interval, rulesPath, operatorTarget string) ([]byte, error) {
	path := filepath.Join(RepoRoot(), "config", "prometheus", "prometheus.yml")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	values := []string{
		"${RSF_SCRAPE_INTERVAL}", interval,
		"${RSF_ALERT_RULES}", rulesPath,
		"${RSF_OPERATOR_METRICS}", operatorTarget,
	}
	for i := 0; i < len(values); i += 2 {
		if !strings.Contains(string(raw), values[i]) {
			return nil, fmt.Errorf("%s has no %s placeholder", path, values[i])
		}
	}
	out := strings.NewReplacer(values...).Replace(string(raw))
	if left := placeholderRE.FindAllString(out, -1); len(left) > 0 {
		return nil, fmt.Errorf("%s: placeholders left after rendering: %v", path, left)
	}
	return []byte(out), nil
}
