package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
)

// TestWatchNamespaces: a second operator, with the shipped identity and
// --watch-namespaces set to one namespace, reconciles the formations of
// that namespace and never looks at another's. (Both formations lack their
// password Secrets, so neither operator creates anything.)
func TestWatchNamespaces(t *testing.T) {
	stack(t)
	watched := newFormation(t, "watched", formationOpts{skipSecrets: true})
	other := newFormation(t, "unwatched", formationOpts{skipSecrets: true})

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = redisv1alpha1.AddToScheme(scheme)
	reg := prometheus.NewRegistry()
	opts := controllers.Options{MaxConcurrentReconciles: 1, ResyncPeriod: time.Second, RedisTimeout: time.Second, PasswordGrace: passwordGrace,
		MaxRetryDelay: time.Second, OperatorNamespace: operatorNamespace, WatchNamespaces: []string{watched.Namespace}}
	mgr, err := ctrl.NewManager(managerCfg, opts.ManagerOptions(ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The suite's operator runs controllers of the same names in this
		// process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}))
	if err != nil {
		t.Fatal(err)
	}
	deps := controllers.Dependencies{
		Metrics: metrics.NewOperator(reg),
		Canary:  redisclient.NewProber(redisclient.Options{Metrics: metrics.NewCache(reg), MaxRetries: -1}),
	}
	if err := controllers.SetupWithManager(mgr, opts, deps); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the namespaced operator: %v", err)
		}
	})

	formations := func() map[string]bool {
		seen := map[string]bool{}
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range families {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "namespace" {
						seen[l.GetValue()] = true
					}
				}
			}
		}
		return seen
	}
	eventually(t, time.Minute, "the namespaced operator reconciles the formation of its namespace", func() (bool, string) {
		seen := formations()
		return seen[watched.Namespace], fmt.Sprintf("series for namespaces %v", seen)
	})
	// Several of its resyncs later, still nothing of the other namespace.
	time.Sleep(3 * time.Second)
	if seen := formations(); seen[other.Namespace] {
		t.Fatalf("the operator watching %s reconciled a formation in %s", watched.Namespace, other.Namespace)
	}
}
