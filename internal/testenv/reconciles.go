package testenv

import ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

// FormationReconciles is controller-runtime's count of formation
// reconciles in this process (every in-process manager adds to the same
// counter); 0 when the registry cannot be read.
func FormationReconciles() float64 {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0
	}
	var total float64
	for _, mf := range families {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "redissentinelformation" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
