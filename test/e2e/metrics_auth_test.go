package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestMetricsNeedAuthorization: the secure metrics endpoint (the
// Deployment's --metrics-secure) answers only callers the API server
// authenticates and authorizes for GET /metrics.
func TestMetricsNeedAuthorization(t *testing.T) {
	c := stack(t)
	ctx := context.Background()
	ns := uniqueName("metrics")
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	// The endpoint's certificate is self-signed, and it is on loopback.
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	cases := []struct {
		name  string
		token string
		want  int
	}{
		{"no credentials", "", http.StatusUnauthorized},
		{"a token without rsf-metrics-reader", serviceAccountToken(t, ns, "nobody", false), http.StatusForbidden},
		{"a token bound to rsf-metrics-reader", serviceAccountToken(t, ns, "scraper", true), http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := httpc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want {
				t.Fatalf("GET %s: %s, want %d: %.200s", metricsURL, resp.Status, tc.want, body)
			}
			if tc.want == http.StatusOK && !strings.Contains(string(body), "controller_runtime_reconcile_total") {
				t.Errorf("no controller metrics in the answer: %.300s", body)
			}
		})
	}
}
