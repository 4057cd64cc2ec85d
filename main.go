/*
Command manager runs the RedisSentinelFormation operator: it reconciles
formations into Incus containers running redis-server and redis-sentinel.
*/
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
)

// version is set by `make image` (-ldflags -X main.version=...).
var version = "dev"

func main() {
	var (
		metricsAddr    string
		metricsSecure  bool
		probeAddr      string
		leaderElect    bool
		leaderElectNS  string
		logLevel       string
		logFormat      string
		controllerOpts controllers.Options
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "127.0.0.1:8080", "address the Prometheus metrics endpoint binds to; \"0\" disables it")
	flag.BoolVar(&metricsSecure, "metrics-secure", false, "serve metrics over HTTPS to callers the API server authenticates and authorizes (GET /metrics, e.g. the rsf-metrics-reader ClusterRole); without it, bind the plain HTTP endpoint to a loopback address")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address the /healthz and /readyz endpoints bind to")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader so that only one of several operator replicas reconciles")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "", "namespace of the leader election lease (default: the in-cluster namespace)")
	flag.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	flag.StringVar(&logFormat, "log-format", "json", "log format: json or console")
	controllerOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	logger, err := newLogger(logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctrl.SetLogger(zapr.NewLogger(logger))
	setupLog := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(redisv1alpha1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), controllerOpts.ManagerOptions(ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 controllers.MetricsServer(metricsAddr, metricsSecure),
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "redis-sentinel-operator.redis.incusops.io",
		LeaderElectionNamespace: leaderElectNS,
		// main exits as soon as the manager stops, so the lease can be
		// released on SIGTERM: the next replica takes over at once (a
		// rolling update), not after the lease has expired.
		LeaderElectionReleaseOnCancel: true,
	}))
	if err != nil {
		setupLog.Error(err, "cannot create the manager; exiting")
		os.Exit(1)
	}
	if err := controllers.SetupWithManager(mgr, controllerOpts, controllers.Dependencies{}); err != nil {
		setupLog.Error(err, "cannot set up the formation controller; exiting")
		os.Exit(1)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))

	setupLog.Info("starting the manager", "version", version, "metrics", metricsAddr, "metricsSecure", metricsSecure, "probes", probeAddr, "leaderElection", leaderElect,
		"watchNamespaces", controllerOpts.WatchNamespaces, "operatorNamespace", controllerOpts.OperatorNamespace)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "the manager stopped with an error")
		os.Exit(1)
	}
}

func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	switch format {
	case "json":
	case "console":
		cfg = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("--log-format: %q is neither json nor console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return cfg.Build()
}
