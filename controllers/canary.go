package controllers

import (
	"context"
	"crypto/sha256"
	"maps"
	"slices"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

// canaryInterval bounds how often one formation is probed.
const canaryInterval = 5 * time.Second

// canaryTimeout bounds one probe: a healthy master answers in milliseconds.
const canaryTimeout = 2 * time.Second

// CanaryProber runs the canary through the client backends use; the real
// one is redisclient.Prober, tests on fake backends use a stub that never
// dials.
type CanaryProber interface {
	Probe(ctx context.Context, key string, connection map[string][]byte) (time.Duration, error)
	Forget(key string)
}

// reconcileCanary writes and reads a key through a FailoverClient built from
// the formation's connection data, the path backends use: Sentinel
// discovery, authentication, a master that accepts writes. Its result is a
// metric; a failing canary never fails the reconcile.
func (r *FormationReconciler) reconcileCanary(ctx context.Context, s *formationState) error {
	// Not before the formation was first whole: replicas still syncing
	// make the master refuse writes (min-replicas-to-write) by design.
	if s.masterMember() == nil || s.f.Status.Connection == nil || s.f.Status.Phase == "" || s.f.Status.Phase == redisv1alpha1.PhaseProvisioning {
		return nil
	}
	key := client.ObjectKeyFromObject(s.f)
	var mem *memory
	r.remember(key, func(m *memory) {
		if r.now().Sub(m.lastCanary) >= canaryInterval {
			m.lastCanary, mem = r.now(), m
		}
	})
	if mem == nil {
		return nil
	}
	// The probe runs beside the reconcile, at most one per formation
	// (canaryTimeout < canaryInterval): during a failover it can wait on the
	// dead master for the whole timeout, and a reconcile waiting with it
	// would hold back the next one, which writes the switch into status.
	data, log := connectionData(s, s.f.Status.Connection.SentinelAddresses), s.log
	go func() {
		probeCtx, cancel := context.WithTimeout(context.Background(), canaryTimeout)
		defer cancel()
		latency, err := r.Canary.Probe(probeCtx, key.String(), data)
		r.memMu.Lock()
		defer r.memMu.Unlock()
		if r.mem[key] != mem {
			r.Canary.Forget(key.String()) // deleted meanwhile: no client, no series left behind
			return
		}
		r.Metrics.CanaryResult(key.Namespace, key.Name, err == nil, latency)
		if err != nil {
			log.Info("canary write+read through Sentinel discovery failed; backends using the connection Secret may fail too; probing again on the next pass",
				"error", err.Error())
		}
	}()
	return nil
}

// digestOf fingerprints settings so that a member is only told again when
// they changed, without keeping the values themselves.
func digestOf(data map[string]string) [32]byte {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(data[k]))
		h.Write([]byte{0})
	}
	return [32]byte(h.Sum(nil))
}
