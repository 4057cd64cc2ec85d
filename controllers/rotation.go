package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

// Keys of the password state Secret.
const (
	stateKeyPassword = "password"
	stateKeyPrevious = "previous-password"
)

// ReasonStateSecretNotOwned: a Secret named like the formation's password
// state exists and belongs to someone else.
const ReasonStateSecretNotOwned = "StateSecretNotOwned"

// passwordStateSecretName is the Secret, owned by the formation, that
// records the data-plane password the members were given and, during a
// rotation, its predecessor. It is what lets an operator restarted at any
// instant of a rotation talk to the members with a password they accept.
func passwordStateSecretName(f *redisv1alpha1.RedisSentinelFormation) string {
	return f.Name + "-password-state"
}

// readPasswordState reads the state Secret from the API server itself: the
// cache may not have the previous pass's write yet.
func (r *FormationReconciler) readPasswordState(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) (passwordState, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: passwordStateSecretName(f)}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return passwordState{}, nil
	case err != nil:
		return passwordState{}, fmt.Errorf("reading the password state Secret: %w", err)
	case !metav1.IsControlledBy(secret, f):
		return passwordState{}, &secretError{ReasonStateSecretNotOwned, fmt.Sprintf("Secret %s/%s exists and is not owned by this formation; the operator keeps the formation's password state there: remove or rename it", f.Namespace, secret.Name)}
	}
	return passwordState{secret: secret, password: string(secret.Data[stateKeyPassword]), previous: string(secret.Data[stateKeyPrevious])}, nil
}

// decidePassword carries a changed data-plane password to the running
// members without breaking anyone who still holds the old one, one step per
// pass, each step idempotent and its progress in the API:
//
//  1. every redis-server accepts both passwords (ACL SETUSER default >new)
//     and replicates with the new one (masterauth); every sentinel
//     authenticates with it (SENTINEL SET auth-pass); then the state
//     Secret records new + previous and status.passwordRotation when the
//     previous one retires;
//  2. the connection Secret then carries the new one (next pass: creds are
//     read from the state Secret);
//  3. after Options.PasswordGrace the previous one is retired (ACL SETUSER
//     default resetpass >new), then dropped from the state Secret.
//
// A step waits until every member answers, so that none is left refusing
// the password the others use. It reports whether the pass must end here.
func decidePassword(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, opts Options, now time.Time) bool {
	st := o.passwordState
	stateName := passwordStateSecretName(f)
	switch {
	case !st.found():
		// First sight: the members run (or will be created) with the
		// Secret's password.
		p.add(action{kind: actWritePasswordState, password: o.desiredPassword, reason: "record the password the members are given"})
		return false
	case st.password != o.desiredPassword:
		if m := notAnswering(o); m != "" {
			p.progressing = "the data-plane password rotation waits until every member answers (" + m + " does not)"
			p.wakeIn(convergePoll)
			return false
		}
		retireAt := metav1.NewTime(now.Add(opts.PasswordGrace))
		p.add(action{kind: actAddPassword, password: o.desiredPassword, previous: st.password, reason: "the password Secret changed"})
		p.add(action{kind: actWritePasswordState, password: o.desiredPassword, previous: st.password, reason: "the members accept the new password", record: func(s *redisv1alpha1.RedisSentinelFormationStatus) {
			s.PasswordRotation = &redisv1alpha1.PasswordRotationStatus{RetireAt: retireAt, StateSecretName: stateName}
		}})
		p.progressing = "rotating the data-plane password"
		p.requeueNow = true
		return true
	case st.previous == "":
		if f.Status.PasswordRotation != nil {
			p.record = append(p.record, func(s *redisv1alpha1.RedisSentinelFormationStatus) { s.PasswordRotation = nil })
		}
		return false
	case f.Status.PasswordRotation == nil:
		// The pass that recorded the new password died before its status
		// write: the grace starts now (later, never earlier).
		retireAt := metav1.NewTime(now.Add(opts.PasswordGrace))
		p.record = append(p.record, func(s *redisv1alpha1.RedisSentinelFormationStatus) {
			s.PasswordRotation = &redisv1alpha1.PasswordRotationStatus{RetireAt: retireAt, StateSecretName: stateName}
		})
		return false
	case now.Before(f.Status.PasswordRotation.RetireAt.Time):
		p.wakeIn(f.Status.PasswordRotation.RetireAt.Sub(now))
		return false
	}
	if m := notAnswering(o); m != "" {
		p.progressing = "retiring the previous data-plane password waits until every member answers (" + m + " does not)"
		p.wakeIn(convergePoll)
		return false
	}
	p.add(action{kind: actRetirePassword, password: st.password, reason: "the grace period of the previous password ended"})
	p.add(action{kind: actWritePasswordState, password: st.password, reason: "the previous password is retired", record: func(s *redisv1alpha1.RedisSentinelFormationStatus) {
		s.PasswordRotation = nil
	}})
	p.requeueNow = true
	return true
}

// notAnswering names a member whose redis-server or sentinel does not
// answer, or "".
func notAnswering(o *observation) string {
	for _, m := range o.members {
		if !m.redisUp() || m.SentinelErr != nil {
			return m.name
		}
	}
	return ""
}

// addPassword makes every member accept password beside the one it has and
// replicate with it, and only then makes the sentinels authenticate with
// it: a sentinel given the new auth-pass reconnects at once, and a
// redis-server that does not know the password yet refuses it, which
// Sentinel does not retry (the replica stays s_down).
func (r *FormationReconciler) addPassword(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, password string) error {
	for _, m := range o.members {
		if err := o.admin.AddPassword(ctx, m.Redis, password); err != nil {
			return fmt.Errorf("adding the new password on %s: %w", m.name, err)
		}
	}
	for _, m := range o.members {
		if err := o.admin.SentinelSet(ctx, m.Sentinel, f.Spec.MasterName, map[string]string{"auth-pass": password}); err != nil {
			return fmt.Errorf("giving sentinel %s the new password: %w", m.name, err)
		}
	}
	return nil
}

// retirePassword makes password the only one every member accepts.
func (r *FormationReconciler) retirePassword(ctx context.Context, o *observation, password string) error {
	for _, m := range o.members {
		if err := o.admin.OnlyPassword(ctx, m.Redis, password); err != nil {
			return fmt.Errorf("retiring the previous password on %s: %w", m.name, err)
		}
	}
	return nil
}

// passwordStateData is the content of the password state Secret.
func passwordStateData(password, previous string) map[string][]byte {
	data := map[string][]byte{stateKeyPassword: []byte(password)}
	if previous != "" {
		data[stateKeyPrevious] = []byte(previous)
	}
	return data
}

// ownedLabels mark the Secrets a formation owns.
func ownedLabels(f *redisv1alpha1.RedisSentinelFormation) map[string]string {
	return map[string]string{"app.kubernetes.io/managed-by": "redis-sentinel-operator", "redis.incusops.io/formation": f.Name}
}
