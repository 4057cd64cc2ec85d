/*
Command dashboard-png draws the key panels of the formation health dashboard
(internal/dashboard.KeyPanels) from a Prometheus server into a PNG file with
gnuplot, the picture of docs/monitoring.md. `make lab-dashboard-png` runs it
against the lab's Prometheus:

	go run ./hack/dashboard-png -prometheus http://127.0.0.1:9090 \
		-namespace default -formation cache -span 15m -out docs/img/formation-health.png
*/
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/incusops/redis-sentinel-operator/internal/dashboard"
)

func main() {
	var (
		url   = flag.String("prometheus", "http://127.0.0.1:9090", "the Prometheus server's address")
		file  = flag.String("dashboard", dashboard.HealthDashboard, "the Grafana dashboard whose panels are drawn")
		scope = dashboard.Scope{RateInterval: "1m"}
		span  = flag.Duration("span", 15*time.Minute, "how far back the picture goes from now")
		out   = flag.String("out", "formation-health.png", "the PNG file to write")
	)
	flag.StringVar(&scope.Namespace, "namespace", "default", "the formation's namespace")
	flag.StringVar(&scope.Formation, "formation", "cache", "the formation's name")
	flag.Parse()
	scope.Range = span.String()
	client, err := api.NewClient(api.Config{Address: *url})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = dashboard.Picture(ctx, promv1.NewAPI(client), *file, scope, *span, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboard-png:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s/%s, the last %s from %s)\n", *out, scope.Namespace, scope.Formation, *span, *url)
}
