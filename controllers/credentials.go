package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/passwords"
)

// Reasons of the SecretsValid condition for the formation's own Secrets.
const (
	ReasonStateSecretNotOwned    = "StateSecretNotOwned"
	ReasonInternalSecretNotOwned = "InternalSecretNotOwned"
	ReasonLegacyPasswordState    = "LegacyPasswordState"
)

// previousSuffix marks a credential's predecessor in the state Secret.
const previousSuffix = ".previous"

// internalSecretName is the Secret, owned by the formation, with the
// passwords of the operator's own users. The operator generates them; an
// admin rotates them by changing a key or deleting the Secret.
func internalSecretName(f *redisv1alpha1.RedisSentinelFormation) string {
	return f.Name + "-internal-credentials"
}

// passwordStateSecretName is the Secret, owned by the formation, that
// records every password the members were given and, during a rotation,
// the predecessors still accepted. It is what lets an operator restarted at
// any instant of a rotation talk to the members with passwords they accept.
func passwordStateSecretName(f *redisv1alpha1.RedisSentinelFormation) string {
	return f.Name + "-password-state"
}

// credentialState is the content of the password state Secret.
type credentialState struct {
	// secret is the Secret as read; nil before the first pass wrote it.
	secret *corev1.Secret
	set    acl.Set
}

func (s credentialState) found() bool { return s.secret != nil }

// readPasswordState reads the state Secret from the API server itself: the
// cache may not have the previous pass's write yet.
func (r *FormationReconciler) readPasswordState(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) (credentialState, error) {
	secret, err := r.readOwnedSecret(ctx, f, passwordStateSecretName(f), ReasonStateSecretNotOwned, "password state")
	if err != nil || secret == nil {
		return credentialState{}, err
	}
	if _, legacy := secret.Data["password"]; legacy {
		return credentialState{}, &secretError{ReasonLegacyPasswordState, fmt.Sprintf("Secret %s/%s records a single data-plane password: the formation was created by an operator without ACL users, and its members cannot be given them live; nothing is changed. Recreate the formation (its data is not migrated)", f.Namespace, secret.Name)}
	}
	st := credentialState{secret: secret, set: acl.Set{}}
	for _, c := range acl.All {
		st.set[c] = acl.Passwords{Current: string(secret.Data[string(c)]), Previous: string(secret.Data[string(c)+previousSuffix])}
	}
	return st, nil
}

// readInternalCredentials reads the internal credentials Secret (nil when
// absent) and returns the passwords it asks for, generating those it lacks.
// complete is false when something was generated: the Secret must be
// written before the passwords are used.
func (r *FormationReconciler) readInternalCredentials(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) (secret *corev1.Secret, values map[acl.Credential]string, complete bool, err error) {
	secret, err = r.readOwnedSecret(ctx, f, internalSecretName(f), ReasonInternalSecretNotOwned, "internal credentials")
	if err != nil {
		return nil, nil, false, err
	}
	values, complete = map[acl.Credential]string{}, secret != nil
	for _, c := range acl.Internal {
		if secret != nil {
			if v, ok := secret.Data[string(c)]; ok {
				if err := passwords.Check(string(v), true); err != nil {
					return nil, nil, false, &secretError{ReasonPasswordRefused, fmt.Sprintf("the password in Secret %s/%s key %q %v; fix or delete the key to have one generated", f.Namespace, secret.Name, c, err)}
				}
				values[c] = string(v)
				continue
			}
		}
		if values[c], err = r.newPassword(); err != nil {
			return nil, nil, false, err
		}
		complete = false
	}
	return secret, values, complete, nil
}

func (r *FormationReconciler) newPassword() (string, error) {
	if r.NewPassword != nil {
		return r.NewPassword()
	}
	return passwords.Generate()
}

// readOwnedSecret reads one of the formation's own Secrets live (nil when
// absent); one that exists and is someone else's blocks the formation.
func (r *FormationReconciler) readOwnedSecret(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, name, notOwned, what string) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: name}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case apierrors.IsForbidden(err):
		return nil, r.forbiddenSecrets(f, name)
	case err != nil:
		return nil, fmt.Errorf("reading the %s Secret: %w", what, err)
	case !metav1.IsControlledBy(secret, f):
		return nil, &secretError{notOwned, fmt.Sprintf("Secret %s/%s exists and is not owned by this formation; the operator keeps the formation's %s there: remove or rename it", f.Namespace, name, what)}
	}
	return secret, nil
}

// decideCredentials carries changed passwords to the running members
// without breaking anyone who still holds an old one, one step per pass,
// each step idempotent and its progress in the API:
//
//  1. every user whose password changed accepts the old and the new one on
//     every member, then replication, Sentinel's monitoring and the
//     sentinel-to-sentinel links switch to the new ones; then the state
//     Secret records new + previous, and status.passwordRotation when the
//     previous ones retire;
//  2. the operator and the connection Secret use the new ones (the next
//     pass reads them from the state Secret);
//  3. after Options.PasswordGrace each user accepts only its new password,
//     then the state Secret drops the previous ones.
//
// A step waits until every member answers, so that none is left refusing
// the passwords the others use. It reports whether the pass must end here.
func decideCredentials(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, opts Options, now time.Time) bool {
	st := o.state
	stateName := passwordStateSecretName(f)
	rotation := func(names []string) func(*redisv1alpha1.RedisSentinelFormationStatus) {
		// Rounded up: the API keeps whole seconds, and truncating would
		// cut the grace short.
		retireAt := metav1.NewTime(ceilSecond(now.Add(opts.PasswordGrace)))
		return func(s *redisv1alpha1.RedisSentinelFormationStatus) {
			s.PasswordRotation = &redisv1alpha1.PasswordRotationStatus{RetireAt: retireAt, StateSecretName: stateName, Credentials: names}
		}
	}
	if !o.internalComplete {
		p.add(action{kind: actWriteSecret, secretName: internalSecretName(f), observed: o.internalSecret, data: internalData(o.desired), reason: "generate the passwords of the operator's own users"})
		p.requeueNow = true
		return true
	}
	if !st.found() {
		// First sight: the members run (or will be created) with the
		// desired passwords and rules.
		p.add(action{kind: actWriteSecret, secretName: stateName, data: stateData(o.creds), reason: "record the passwords the members are given"})
		return false
	}
	if target, changed := rotationTarget(st.set, o.desired); len(changed) > 0 {
		if waitForEveryMember(p, o, "the password rotation") {
			return false
		}
		p.add(action{kind: actApplyCredentials, creds: target, backend: appliedBackendUser(f), reason: "new passwords for " + joinNames(changed) + ": the users accept the old and the new ones"})
		p.add(action{kind: actWriteSecret, secretName: stateName, observed: st.secret, data: stateData(target), reason: "the members accept the new passwords",
			record: rotation(target.Rotating())})
		p.progressing = "rotating the passwords of " + joinNames(changed)
		p.requeueNow = true
		return true
	}
	rotating := st.set.Rotating()
	switch {
	case len(rotating) == 0:
		if f.Status.PasswordRotation != nil {
			p.record = append(p.record, func(s *redisv1alpha1.RedisSentinelFormationStatus) { s.PasswordRotation = nil })
		}
		return false
	case f.Status.PasswordRotation == nil:
		// The pass that recorded the new passwords died before its status
		// write: the grace starts now (later, never earlier).
		p.record = append(p.record, rotation(rotating))
		return false
	case now.Before(f.Status.PasswordRotation.RetireAt.Time):
		p.wakeIn(f.Status.PasswordRotation.RetireAt.Sub(now))
		return false
	}
	if waitForEveryMember(p, o, "retiring the previous passwords") {
		return false
	}
	retired := acl.Set{}
	for c, pw := range st.set {
		retired[c] = acl.Passwords{Current: pw.Current}
	}
	p.add(action{kind: actApplyCredentials, creds: retired, backend: appliedBackendUser(f), reason: "the grace period of the previous passwords of " + joinNames(rotating) + " ended"})
	p.add(action{kind: actWriteSecret, secretName: stateName, observed: st.secret, data: stateData(retired), reason: "the previous passwords are retired",
		record: func(s *redisv1alpha1.RedisSentinelFormationStatus) { s.PasswordRotation = nil }})
	p.requeueNow = true
	return true
}

// decideBackendRules gives the running members the backend user's rules
// when they differ from those they run with (status.backendRules), and
// records them once every member took them. redis-server applies a rule set
// whole or not at all, so a refused one leaves the previous rules in place.
func decideBackendRules(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation) {
	want := backendUser(f)
	if !o.state.found() || slices.Equal(f.Status.BackendRules, want.Rules) || notAnswering(o) != "" {
		return
	}
	p.add(action{kind: actApplyBackendRules, creds: o.creds, backend: want, reason: "the backend user's rules differ from spec.auth.backendUser.rules",
		record: func(s *redisv1alpha1.RedisSentinelFormationStatus) { s.BackendRules = slices.Clone(want.Rules) }})
}

// applyBackendRules gives every redis-server's backend user the rules of
// backend, with the passwords it accepts now.
func (r *FormationReconciler) applyBackendRules(ctx context.Context, o *observation, creds acl.Set, backend acl.Backend) error {
	u := acl.BackendUser(creds, backend)
	for _, m := range o.members {
		if err := o.admin.SetUser(ctx, m.Redis, u); err != nil {
			return fmt.Errorf("setting the backend user's rules on %s: %w", m.name, err)
		}
	}
	return nil
}

func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// rotationTarget is the state a rotation moves to: every credential whose
// desired password differs from the current one gets it, with the current
// one as its predecessor; the others stay as they are.
func rotationTarget(state acl.Set, desired map[acl.Credential]string) (acl.Set, []string) {
	target := acl.Set{}
	var changed []string
	for _, c := range acl.All {
		target[c] = state[c]
		if want := desired[c]; want != state[c].Current {
			target[c] = acl.Passwords{Current: want, Previous: state[c].Current}
			changed = append(changed, string(c))
		}
	}
	return target, changed
}

// waitForEveryMember reports whether a member does not answer, and then
// says in p that step waits for it: a password step taken while one member
// is unreachable would leave it refusing the passwords the others use.
func waitForEveryMember(p *plan, o *observation, step string) bool {
	m := notAnswering(o)
	if m == "" {
		return false
	}
	p.progressing = step + " waits until every member answers (" + m + " does not)"
	p.wakeIn(convergePoll)
	return true
}

// notAnswering names a member whose redis-server or sentinel does not
// answer, or whose sentinel still monitors the master under another name
// than spec.masterName (the rename comes first: a step sets the monitoring
// password under the spec's name), or "".
func notAnswering(o *observation) string {
	for _, m := range o.members {
		if !m.redisUp() || m.SentinelErr != nil || len(m.OtherNames) > 0 {
			return m.name
		}
	}
	return ""
}

// applyCredentials makes every member's users exactly those of creds, then
// switches the links between the servers to the current passwords:
// replicas to their master (masterauth), sentinels to the redis-servers
// (auth-pass) and to each other (sentinel-pass). Users first: a link given
// a password its peer does not accept yet is refused, and Sentinel does
// not retry a refused replica (it stays s_down).
func (r *FormationReconciler) applyCredentials(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, creds acl.Set, backend acl.Backend) error {
	serverUsers := acl.ServerUsers(creds, backend)
	for _, m := range o.members {
		sentinelUsers := acl.SentinelUsers(creds, backend, m.engine())
		for _, u := range serverUsers {
			if err := o.admin.SetUser(ctx, m.Redis, u); err != nil {
				return fmt.Errorf("setting ACL user %s on %s: %w", u.Name, m.name, err)
			}
		}
		for _, u := range sentinelUsers {
			if err := o.admin.SentinelSetUser(ctx, m.Sentinel, u); err != nil {
				return fmt.Errorf("setting ACL user %s on sentinel %s: %w", u.Name, m.name, err)
			}
		}
	}
	for _, m := range o.members {
		if err := o.admin.ConfigSet(ctx, m.Redis, replicationAuth(creds)); err != nil {
			return fmt.Errorf("giving %s the replication password: %w", m.name, err)
		}
		if err := o.admin.SentinelSet(ctx, m.Sentinel, f.Spec.MasterName, monitoringAuth(creds)); err != nil {
			return fmt.Errorf("giving sentinel %s the monitoring password: %w", m.name, err)
		}
		if err := o.admin.SentinelConfigSet(ctx, m.Sentinel, peerAuth(creds)); err != nil {
			return fmt.Errorf("giving sentinel %s the peer password: %w", m.name, err)
		}
	}
	return nil
}

func replicationAuth(creds acl.Set) map[string]string {
	return map[string]string{"masteruser": acl.ReplicationUser, "masterauth": creds[acl.Replication].Current}
}

func monitoringAuth(creds acl.Set) map[string]string {
	return map[string]string{"auth-user": acl.MonitoringUser, "auth-pass": creds[acl.Monitoring].Current}
}

func peerAuth(creds acl.Set) map[string]string {
	return map[string]string{"sentinel-user": acl.PeerUser, "sentinel-pass": creds[acl.Peer].Current}
}

// backendUser is the spec's backend user.
func backendUser(f *redisv1alpha1.RedisSentinelFormation) acl.Backend {
	b := acl.Backend{Name: f.Spec.Auth.BackendUser.Name, Rules: f.Spec.Auth.BackendUser.Rules}
	if b.Name == "" {
		b.Name = acl.DefaultBackendUser
	}
	if len(b.Rules) == 0 {
		b.Rules = acl.DefaultBackendRules
	}
	return b
}

// appliedBackendUser is the backend user with the rules the members run
// with: what new members and password changes use, so that only
// decideBackendRules changes rules. Before any were applied it is allowed
// nothing.
func appliedBackendUser(f *redisv1alpha1.RedisSentinelFormation) acl.Backend {
	b := backendUser(f)
	b.Rules = f.Status.BackendRules
	if len(b.Rules) == 0 {
		b.Rules = acl.NoRules
	}
	return b
}

// backendRulesApplied: the members run with the spec's backend rules.
func backendRulesApplied(f *redisv1alpha1.RedisSentinelFormation) bool {
	return slices.Equal(f.Status.BackendRules, backendUser(f).Rules)
}

// stateData is the content of the password state Secret.
func stateData(set acl.Set) map[string][]byte {
	data := map[string][]byte{}
	for c, p := range set {
		data[string(c)] = []byte(p.Current)
		if p.Previous != "" {
			data[string(c)+previousSuffix] = []byte(p.Previous)
		}
	}
	return data
}

// internalData is the content of the internal credentials Secret.
func internalData(desired map[acl.Credential]string) map[string][]byte {
	data := map[string][]byte{}
	for _, c := range acl.Internal {
		data[string(c)] = []byte(desired[c])
	}
	return data
}

func joinNames(names []string) string { return strings.Join(names, ", ") }

// ownedLabels mark the Secrets a formation owns.
func ownedLabels(f *redisv1alpha1.RedisSentinelFormation) map[string]string {
	return map[string]string{"app.kubernetes.io/managed-by": "redis-sentinel-operator", "redis.incusops.io/formation": f.Name}
}
