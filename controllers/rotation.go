package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

// rotatePassword carries a changed data-plane password to the running
// members without breaking anyone who still holds the old one:
//
//  1. every redis-server accepts both passwords (ACL SETUSER default >new)
//     and replicates with the new one (masterauth);
//  2. every sentinel authenticates with the new one (SENTINEL SET auth-pass);
//  3. the connection Secret then carries the new one (connection phase);
//  4. after Options.PasswordGrace the old one is retired
//     (ACL SETUSER default resetpass >new).
//
// The previous password is held in memory only; if the operator restarts
// during a rotation, the formation reports that members refuse the current
// password instead.
func (r *FormationReconciler) rotatePassword(ctx context.Context, s *formationState) error {
	key := client.ObjectKeyFromObject(s.f)
	var previous string
	var retire bool
	r.remember(key, func(m *memory) {
		switch {
		case m.password == "":
			m.password = s.creds.Password // first sight: what the members use
		case m.password != s.creds.Password:
			previous = m.password
		case !m.retireAt.IsZero() && r.now().After(m.retireAt):
			retire = true
		}
	})
	switch {
	case previous != "":
		return r.addPassword(ctx, s, previous)
	case retire:
		return r.retirePassword(ctx, s)
	}
	return nil
}

func (r *FormationReconciler) addPassword(ctx context.Context, s *formationState, previous string) error {
	old := r.Redis.Admin(redisadmin.Credentials{Password: previous, SentinelPassword: s.creds.SentinelPassword})
	for _, m := range s.members {
		if m.instance == nil || m.instance.IPv4 == "" {
			continue // created or restarted later from the new password
		}
		server := endpoint.Endpoint{Host: m.instance.IPv4, Port: int(s.f.Spec.Redis.Port)}
		if err := old.AddPassword(ctx, server, s.creds.Password); err != nil {
			// Already switched (a retried rotation) answers to the new one.
			if err2 := s.admin.AddPassword(ctx, server, s.creds.Password); err2 != nil {
				return fmt.Errorf("adding the new password on %s: %w", m.name, err)
			}
		}
		sentinel := endpoint.Endpoint{Host: m.instance.IPv4, Port: int(s.f.Spec.Redis.SentinelPort)}
		if err := s.admin.SentinelSet(ctx, sentinel, s.f.Spec.MasterName, map[string]string{"auth-pass": s.creds.Password}); err != nil {
			return err
		}
	}
	r.remember(client.ObjectKeyFromObject(s.f), func(m *memory) {
		m.password = s.creds.Password
		m.retireAt = r.now().Add(r.Options.PasswordGrace)
	})
	s.progressing = "rotating the data-plane password"
	r.event(s.f, corev1.EventTypeNormal, "PasswordRotated", "RotatePassword", "",
		"members accept the new password and replicate with it; the previous one stays valid for %s so clients can reload the connection Secret", r.Options.PasswordGrace)
	s.log.Info("data-plane password rotated; the previous one is retired after the grace period", "grace", r.Options.PasswordGrace.String())
	return nil
}

func (r *FormationReconciler) retirePassword(ctx context.Context, s *formationState) error {
	for _, m := range s.members {
		if m.instance == nil || m.instance.IPv4 == "" {
			continue
		}
		server := endpoint.Endpoint{Host: m.instance.IPv4, Port: int(s.f.Spec.Redis.Port)}
		if err := s.admin.OnlyPassword(ctx, server, s.creds.Password); err != nil {
			return fmt.Errorf("retiring the previous password on %s: %w", m.name, err)
		}
	}
	r.remember(client.ObjectKeyFromObject(s.f), func(m *memory) { m.retireAt = time.Time{} })
	r.event(s.f, corev1.EventTypeNormal, "PasswordRetired", "RotatePassword", "", "the previous data-plane password is no longer accepted")
	s.log.Info("previous data-plane password retired")
	return nil
}
