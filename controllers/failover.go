package controllers

import (
	"context"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
)

// SentinelWatcher is what the controller needs of the Sentinel event
// watcher (internal/sentinel); tests on fake backends use a stub.
type SentinelWatcher interface {
	Watch(key client.ObjectKey, password string, targets []sentinel.Target)
	Forget(key client.ObjectKey)
	Events(key client.ObjectKey) []sentinel.Event
	PendingSwitches(key client.ObjectKey) []sentinel.Switch
	AckSwitches(key client.ObjectKey, n int)
}

// followSwitches writes master switches announced by Sentinel into status
// at once, before the slower full observation: +switch-master is only
// published once the new master's config is final.
//
// The cached object may lag behind this controller's previous status write,
// so the write re-reads the resource from the API server on a conflict: a
// switch taken from the watcher must not be lost.
func (r *FormationReconciler) followSwitches(ctx context.Context, s *formationState) error {
	key := client.ObjectKeyFromObject(s.f)
	switches := r.Watcher.PendingSwitches(key)
	if len(switches) == 0 {
		return nil
	}
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			// A fresh object: decoding into the old one would keep
			// fields the server no longer has.
			fresh := &redisv1alpha1.RedisSentinelFormation{}
			if err := r.APIReader.Get(ctx, key, fresh); err != nil {
				return err
			}
			s.f = fresh
		}
		first = false
		for _, sw := range switches {
			r.recordSwitch(s, sw)
		}
		r.recordEvents(s)
		return r.Status().Update(ctx, s.f)
	})
	if err == nil {
		r.Watcher.AckSwitches(key, len(switches))
	}
	return err
}

// recordPendingSwitches records switches announced while this reconcile
// ran, with their timing, before the observed master is compared; they are
// acknowledged once the status is written.
func (r *FormationReconciler) recordPendingSwitches(s *formationState) {
	switches := r.Watcher.PendingSwitches(client.ObjectKeyFromObject(s.f))
	for _, sw := range switches {
		r.recordSwitch(s, sw)
	}
	s.recordedSwitches = len(switches)
}

func (r *FormationReconciler) recordSwitch(s *formationState, sw sentinel.Switch) {
	f := s.f
	from, to := memberAt(f, sw.From), memberAt(f, sw.To)
	var duration *metav1.Duration
	if sw.Duration > 0 {
		duration = &metav1.Duration{Duration: sw.Duration}
	}
	if last := f.Status.LastFailover; last != nil && f.Status.Master != nil && f.Status.Master.Member == to && last.To == to {
		// Recorded already: by a reconcile that saw this switch in
		// Sentinel's state (add what only the event knows), or from this
		// very event by an earlier attempt.
		if last.Duration == nil && duration != nil {
			last.Duration, last.Time = duration, metav1.NewMicroTime(sw.Time)
		}
		return
	}
	host, portStr, _ := net.SplitHostPort(sw.To)
	port, _ := strconv.Atoi(portStr)
	since := metav1.NewTime(sw.Time)
	f.Status.Master = &redisv1alpha1.MasterStatus{Member: to, Address: host, Port: int32(port), Since: &since}
	r.countFailover(s, from, to, sw.Time, sw.Duration)
}

// countFailover records one master switch in status, metrics and events.
func (r *FormationReconciler) countFailover(s *formationState, from, to string, at time.Time, d time.Duration) {
	f := s.f
	f.Status.Failovers++
	f.Status.LastFailover = &redisv1alpha1.FailoverRecord{Time: metav1.NewMicroTime(at), From: from, To: to}
	if d > 0 {
		f.Status.LastFailover.Duration = &metav1.Duration{Duration: d}
	}
	r.Metrics.FailoverObserved(f.Namespace, f.Name, d)
	r.event(f, corev1.EventTypeWarning, "MasterSwitched", "Failover", to, "master moved from %s to %s (outage %s)", from, to, d.Round(time.Millisecond))
	s.log.Info("master switched; replicas and sentinels are checked next", "from", from, "to", to, "outage", d.String())
}

// recordEvents copies the watcher's latest Sentinel events into status.
func (r *FormationReconciler) recordEvents(s *formationState) {
	events := r.Watcher.Events(client.ObjectKeyFromObject(s.f))
	out := make([]redisv1alpha1.SentinelEvent, 0, len(events))
	for _, e := range events {
		out = append(out, redisv1alpha1.SentinelEvent{Time: metav1.NewMicroTime(e.Time), Sentinel: e.Sentinel, Type: e.Type, Message: e.Payload})
	}
	if len(out) > 0 {
		s.f.Status.RecentEvents = out
	}
}

// memberAt names the member at ip:port from status, or returns the address.
func memberAt(f *redisv1alpha1.RedisSentinelFormation, addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	for _, m := range f.Status.Members {
		if m.Address == host {
			return m.Name
		}
	}
	return addr
}
