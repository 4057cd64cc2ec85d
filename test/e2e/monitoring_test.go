package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/dashboard"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// alertFor replaces every rule's `for` in the e2e's copy of the alert
// rules: the promtool tests (config/prometheus_test.go) prove the real
// durations; this test proves the expressions against real series, which
// it cannot do while waiting 10 minutes per alert.
const alertFor = "3s"

// TestPrometheusAlertsAndDashboards runs a real Prometheus over a real
// formation, the way a cluster's Prometheus would watch it: it scrapes the
// operator's secure metrics endpoint as a service account bound to the
// shipped rsf-metrics-reader role (honor_labels, config/prometheus/
// prometheus.yml) and a backend's cache metrics, and evaluates
// config/prometheus/alerts.yaml. Then:
//   - memory past 75 % of maxmemory fires RSFRedisMemoryHigh and not yet
//     RSFRedisMemoryCritical; past 90 % fires the critical one too;
//   - a backend whose rate limiter fails on 1 call in 5 fires
//     RSFRedisCacheFallbacks for that subsystem;
//   - a failover drill fires RSFRedisFailoverHappened;
//   - every query of every Grafana dashboard (and its variables) returns
//     data, and the health dashboard's key panels are drawn to a PNG
//     (RSF_E2E_KEEP_PNG=<file> keeps it);
//   - stopping every sentinel fires RSFRedisQuorumLost.
func TestPrometheusAlertsAndDashboards(t *testing.T) {
	stack(t)
	ctx := context.Background()
	f := newFormation(t, "prom", formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		// Small, and no eviction, so that filling it is quick and stays full.
		f.Spec.Redis.Maxmemory = "16mb"
		f.Spec.Redis.MaxmemoryPolicy = "noeviction"
	}})
	backend := startBackendMetrics(t)
	prom := startFormationPrometheus(t, f.Namespace, backend.addr)
	cur := waitReady(t, f, 3*time.Minute)
	key := model.LabelSet{"namespace": model.LabelValue(f.Namespace), "formation": model.LabelValue(f.Name)}
	masterKey := key.Clone()
	masterKey["member"] = model.LabelValue(cur.Status.Master.Member)

	eventually(t, time.Minute, "Prometheus scrapes the operator and the backend", func() (bool, string) {
		return targetsUp(ctx, prom)
	})

	t.Run("memory", func(t *testing.T) {
		master := adminRedis(t, cur, cur.Status.Master.Address)
		defer master.Close()
		keys := fillMemory(t, master, 0.80)
		waitAlert(t, prom, "RSFRedisMemoryHigh", masterKey, promv1.AlertStateFiring)
		// Two more evaluations at 80 %: the critical alert stays silent.
		time.Sleep(2 * time.Second)
		if a := findAlert(t, prom, "RSFRedisMemoryCritical", key); a != nil {
			t.Fatalf("RSFRedisMemoryCritical is %s at 80 %% of maxmemory: %v", a.State, a.Labels)
		}
		keys = append(keys, fillMemory(t, master, 0.93)...)
		waitAlert(t, prom, "RSFRedisMemoryCritical", masterKey, promv1.AlertStateFiring)
		waitAlert(t, prom, "RSFRedisMemoryHigh", masterKey, promv1.AlertStateFiring)
		// Room again for the writes of the drill below.
		if err := master.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	})

	stopTraffic := backendTraffic(t, f, backend.cache)
	t.Run("cache fallbacks", func(t *testing.T) {
		waitAlert(t, prom, "RSFRedisCacheFallbacks", model.LabelSet{"namespace": model.LabelValue(f.Namespace), "subsystem": "rate_limiter"}, promv1.AlertStateFiring)
	})

	t.Run("failover", func(t *testing.T) {
		failoverDrill(t, f)
		waitAlert(t, prom, "RSFRedisFailoverHappened", key, promv1.AlertStateFiring)
	})

	t.Run("dashboards", func(t *testing.T) {
		// The rate windows need a few scrapes of the traffic after the
		// failover.
		time.Sleep(5 * time.Second)
		checkDashboards(t, prom, f)
	})
	stopTraffic()

	t.Run("quorum", func(t *testing.T) {
		cur := get(t, f)
		// Masked, so that the operator's healing cannot start them again
		// before the alert has fired: a sentinel that cannot start.
		for _, m := range cur.Status.Members {
			runIn(t, m.Instance, "systemctl mask --runtime "+suiteEngine.SentinelUnit+" && systemctl stop "+suiteEngine.SentinelUnit)
		}
		waitAlert(t, prom, "RSFRedisQuorumLost", key, promv1.AlertStateFiring)
		for _, m := range cur.Status.Members {
			runIn(t, m.Instance, "systemctl unmask --runtime "+suiteEngine.SentinelUnit)
		}
		waitReady(t, f, 2*time.Minute)
	})
}

// startFormationPrometheus renders config/prometheus/prometheus.yml for the
// suite's operator (its secure endpoint, scraped with a token bound to
// rsf-metrics-reader) and adds the backend's job, labelled with the
// backends' namespace as a pod's scrape would be. It loads a copy of the
// alert rules whose `for` is alertFor.
func startFormationPrometheus(t *testing.T, namespace, backendAddr string) *harness.Prometheus {
	t.Helper()
	dir := t.TempDir()
	rules := filepath.Join(dir, "alerts.yaml")
	if err := os.WriteFile(rules, shortenedAlerts(t), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(serviceAccountToken(t, namespace, "prometheus", true)), 0o600); err != nil {
		t.Fatal(err)
	}
	operatorTarget := strings.TrimSuffix(strings.TrimPrefix(metricsURL, "https://"), "/metrics")
	rendered, err := testenv.RenderPrometheusConfig("1s", rules, operatorTarget)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(rendered, &cfg); err != nil {
		t.Fatal(err)
	}
	jobs := cfg["scrape_configs"].([]any)
	operator := jobs[0].(map[string]any)
	operator["scheme"] = "https"
	operator["authorization"] = map[string]any{"credentials_file": tokenFile}
	// controller-runtime's self-signed certificate, on loopback.
	operator["tls_config"] = map[string]any{"insecure_skip_verify": true}
	cfg["scrape_configs"] = append(jobs, map[string]any{
		"job_name":       "backend",
		"static_configs": []any{map[string]any{"targets": []any{backendAddr}, "labels": map[string]any{"namespace": namespace}}},
	})
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := harness.StartPrometheus(context.Background(), dir, out)
	if err != nil {
		testenv.Check(t, "prometheus", err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.Log())
		}
	})
	return p
}

// shortenedAlerts is config/prometheus/alerts.yaml with every `for` set to
// alertFor and nothing else changed.
func shortenedAlerts(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string           `json:"name"`
			Rules []map[string]any `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if _, ok := r["for"]; ok {
				r["for"] = alertFor
			}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// serviceAccountToken is a token (an hour long) of a new service account
// in ns, bound to the shipped rsf-metrics-reader ClusterRole when reader,
// as a cluster's Prometheus holds.
func serviceAccountToken(t *testing.T, ns, name string, reader bool) string {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	if reader {
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "rsf-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
		}
		if err := k8s.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), binding) })
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// backendMetrics is a backend's cache metrics, served for Prometheus.
type backendMetrics struct {
	addr  string
	cache *metrics.Cache
}

func startBackendMetrics(t *testing.T) backendMetrics {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return backendMetrics{addr: l.Addr().String(), cache: metrics.NewCache(reg)}
}

// backendTraffic runs a backend on the formation's connection Secret until
// the returned stop is called: every 50 ms a presence SET, a chat PUBLISH
// and a rate-limiter INCR, one INCR in five on a key that holds no integer
// (an error, so a miss the backend falls back on).
func backendTraffic(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, cache *metrics.Cache) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := harness.ConnectionClient(ctx, k8s, f, redisclient.Options{Metrics: cache})
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Set(ctx, "e2e:not-a-number", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_ = rc.Set(redisclient.WithSubsystem(ctx, "presence"), "e2e:presence", i, time.Minute).Err()
			_ = rc.Publish(redisclient.WithSubsystem(ctx, "chat_pubsub"), "e2e:chat", i).Err()
			limited := "e2e:rate"
			if i%5 == 0 {
				limited = "e2e:not-a-number"
			}
			_ = rc.Incr(redisclient.WithSubsystem(ctx, "rate_limiter"), limited).Err()
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		_ = rc.Close()
	}
}

// fillMemory writes 64 KiB values to the master until its used_memory is
// at least ratio of its maxmemory, and returns their keys.
func fillMemory(t *testing.T, master *redis.Client, ratio float64) []string {
	t.Helper()
	ctx := context.Background()
	value := make([]byte, 64<<10)
	var keys []string
	for {
		info, err := master.InfoMap(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		used, uerr := strconv.ParseFloat(info["Memory"]["used_memory"], 64)
		limit, lerr := strconv.ParseFloat(info["Memory"]["maxmemory"], 64)
		if uerr != nil || lerr != nil || limit == 0 {
			t.Fatalf("INFO memory: used_memory %q, maxmemory %q", info["Memory"]["used_memory"], info["Memory"]["maxmemory"])
		}
		if used/limit >= ratio {
			t.Logf("used_memory %.0f of maxmemory %.0f (%.1f %%) after %d writes", used, limit, 100*used/limit, len(keys))
			return keys
		}
		if _, err := rand.Read(value); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("e2e:fill:%d:%d", int(ratio*100), len(keys))
		if err := master.Set(ctx, k, value, 0).Err(); err != nil {
			t.Fatalf("filling to %.0f %%: %v", 100*ratio, err)
		}
		keys = append(keys, k)
	}
}

// checkDashboards runs every query of every Grafana dashboard, and every
// variable query, against Prometheus for the formation: each must return
// data, and a number rather than NaN, or a panel would show nothing (a
// metric or label that does not exist, a counter with no series yet). It
// then draws the health dashboard's key panels as docs/monitoring.md's
// picture is drawn, and checks that a PNG came out.
func checkDashboards(t *testing.T, prom *harness.Prometheus, f *redisv1alpha1.RedisSentinelFormation) {
	ctx := context.Background()
	// What Grafana gives the intervals for a 1 s scrape and a short range.
	scope := dashboard.Scope{Namespace: f.Namespace, Formation: f.Name, RateInterval: "20s", Range: "10m"}
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	for _, file := range files {
		d, err := dashboard.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(file)
		for _, v := range d.Variables {
			if v.Type != "query" {
				continue
			}
			selector, label, err := dashboard.LabelValuesQuery(v.Definition)
			if err == nil {
				selector, err = scope.Expand(selector)
			}
			if err != nil {
				t.Errorf("%s: variable %s: %v", name, v.Name, err)
				continue
			}
			got, _, _, err := prom.API.LabelValues(ctx, label, []string{selector}, time.Now().Add(-time.Hour), time.Now())
			want := map[string]string{"namespace": f.Namespace, "formation": f.Name}[label]
			if err != nil || !slices.Contains(got, model.LabelValue(want)) {
				t.Errorf("%s: variable %s (%s) offers %v (%v), not %s", name, v.Name, v.Definition, got, err, want)
			}
		}
		queries := d.Queries()
		if len(queries) == 0 {
			t.Fatalf("%s: no queries", name)
		}
		for _, e := range queries {
			q, err := scope.Expand(e)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			val, _, _, err := prom.API.Query(ctx, q, time.Now())
			if err != nil {
				t.Errorf("%s: %s: %v", name, q, err)
				continue
			}
			if !hasNumber(val) {
				t.Errorf("%s: no data for %s: %v", name, q, val)
			}
		}
		t.Logf("%s: %d queries and %d variables return data", name, len(queries), len(d.Variables)-1)
	}

	png := filepath.Join(t.TempDir(), "health.png")
	if p := os.Getenv("RSF_E2E_KEEP_PNG"); p != "" {
		png = p
	}
	if err := dashboard.Picture(ctx, prom.API, filepath.Join(testenv.RepoRoot(), dashboard.HealthDashboard), scope, 5*time.Minute, png); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(png)
	if err != nil || len(b) < 10<<10 || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s: %d bytes, not a picture (%v)", png, len(b), err)
	}
}

// hasNumber says whether a query result holds at least one sample that is
// a number (not NaN).
func hasNumber(v model.Value) bool {
	switch x := v.(type) {
	case model.Vector:
		for _, s := range x {
			if !math.IsNaN(float64(s.Value)) {
				return true
			}
		}
	case *model.Scalar:
		return !math.IsNaN(float64(x.Value))
	}
	return false
}

// targetsUp says whether every scrape target is up.
func targetsUp(ctx context.Context, prom *harness.Prometheus) (bool, string) {
	res, err := prom.API.Targets(ctx)
	if err != nil {
		return false, err.Error()
	}
	var states []string
	up := len(res.Active) == 2
	for _, tg := range res.Active {
		states = append(states, fmt.Sprintf("%s %s %s", tg.Labels["job"], tg.Health, tg.LastError))
		up = up && tg.Health == promv1.HealthGood
	}
	return up, strings.Join(states, "; ")
}

// findAlert returns the alert named name whose labels include want, or nil.
func findAlert(t *testing.T, prom *harness.Prometheus, name string, want model.LabelSet) *promv1.Alert {
	t.Helper()
	res, err := prom.API.Alerts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range res.Alerts {
		if string(a.Labels[model.AlertNameLabel]) != name {
			continue
		}
		match := true
		for k, v := range want {
			match = match && a.Labels[k] == v
		}
		if match {
			return &res.Alerts[i]
		}
	}
	return nil
}

// waitAlert waits until Prometheus's alerts API shows the alert in state.
func waitAlert(t *testing.T, prom *harness.Prometheus, name string, want model.LabelSet, state promv1.AlertState) {
	t.Helper()
	start := time.Now()
	eventually(t, 2*time.Minute, fmt.Sprintf("%s %s for %v", name, state, want), func() (bool, string) {
		a := findAlert(t, prom, name, want)
		if a == nil {
			return false, "not pending or firing"
		}
		return a.State == state, string(a.State)
	})
	t.Logf("%s %s after %s", name, state, time.Since(start).Round(100*time.Millisecond))
}
