package controllers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
)

// canaryInterval bounds how often one formation is probed.
const canaryInterval = 5 * time.Second

// canaryTimeout bounds one probe: a healthy master answers in milliseconds.
const canaryTimeout = 2 * time.Second

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
	data := connectionData(s, s.f.Status.Connection.SentinelAddresses)
	digest := digestOf(data)
	var c *redis.Client
	var err error
	r.remember(client.ObjectKeyFromObject(s.f), func(m *memory) {
		if r.now().Sub(m.lastCanary) < canaryInterval {
			return
		}
		m.lastCanary = r.now()
		if m.canary == nil || m.canaryDigest != digest {
			if m.canary != nil {
				_ = m.canary.Close()
			}
			m.canary, err = redisclient.FromSecretData(data, redisclient.Options{Metrics: r.Cache, MaxRetries: -1, DialerRetries: 1})
			m.canaryDigest = digest
		}
		c = m.canary
	})
	if err != nil {
		return fmt.Errorf("building the canary client: %w", err)
	}
	if c == nil {
		return nil // probed recently
	}
	probeCtx, cancel := context.WithTimeout(ctx, canaryTimeout)
	defer cancel()
	latency, err := redisclient.Canary(probeCtx, c, "")
	r.Metrics.CanaryResult(s.f.Namespace, s.f.Name, err == nil, latency)
	if err != nil {
		s.log.Info("canary write+read through Sentinel discovery failed; backends using the connection Secret may fail too; probing again on the next pass",
			"error", err.Error())
	}
	return nil
}

// digestOf fingerprints connection data so a changed password or address
// gets a new client, without keeping the values themselves as a map key.
func digestOf[V ~string | ~[]byte](data map[string]V) [32]byte {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(data[k]))
		h.Write([]byte{0})
	}
	return [32]byte(h.Sum(nil))
}
