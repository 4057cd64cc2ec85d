package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
)

// TestSecretsArePerNamespaceGrants: with the shipped RBAC the operator's
// service account reads no Secret of a namespace that has not opened its
// Secrets to it, nor lists Secrets cluster-wide; a formation there is
// blocked with the grant to make and creates nothing, and becomes Ready
// once the namespace admin makes it.
func TestSecretsArePerNamespaceGrants(t *testing.T) {
	t.Parallel()
	c := stack(t)
	ctx := context.Background()
	asOperator, err := client.New(managerCfg, client.Options{Scheme: c.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	f := newFormation(t, "nogrant", formationOpts{withoutGrant: true})
	createSecret(t, f.Namespace, "unrelated", "token", "no-formation-reads-this")
	for _, name := range []string{"unrelated", f.Spec.Auth.PasswordSecretRef.Name} {
		err := asOperator.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: name}, &corev1.Secret{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("the operator read Secret %s/%s of a namespace that did not grant it: err %v, want Forbidden", f.Namespace, name, err)
		}
	}
	for _, ns := range []string{"", f.Namespace, operatorNamespace} {
		if err := asOperator.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
			t.Errorf("the operator listed the Secrets of namespace %q (\"\": all): err %v, want Forbidden", ns, err)
		}
	}

	cur := waitCondition(t, f, time.Minute, redisv1alpha1.ConditionSecretsValid, metav1.ConditionFalse, controllers.ReasonSecretAccessForbidden)
	grant := "kubectl -n " + f.Namespace + " create rolebinding rsf-formation-secrets --clusterrole=rsf-formation-secrets --serviceaccount=" + operatorNamespace + ":rsf-controller-manager"
	if msg := conditionMessage(cur, redisv1alpha1.ConditionSecretsValid); !strings.Contains(msg, grant) {
		t.Errorf("SecretsValid message %q does not name the grant %q", msg, grant)
	}
	eventually(t, 30*time.Second, "a "+controllers.ReasonSecretAccessForbidden+" Event", func() (bool, string) {
		return len(events(t, f, controllers.ReasonSecretAccessForbidden)) > 0, "none"
	})
	if cur.Status.Phase == redisv1alpha1.PhaseReady {
		t.Fatal("phase Ready without access to the password Secrets")
	}
	if owned, err := incusSrv.ListInstances(ctx, "user.rsf.formation-uid", string(cur.UID)); err != nil || len(owned) != 0 {
		t.Fatalf("instances were created without access to the Secrets: %d (%v)", len(owned), err)
	}
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace(f.Namespace)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if metav1.IsControlledBy(&s, cur) {
			t.Errorf("Secret %s was created without access to the Secrets", s.Name)
		}
	}

	// The namespace admin runs the command the condition names.
	grantSecrets(t, f.Namespace)
	waitReady(t, f, 4*time.Minute)
	waitCondition(t, f, time.Minute, redisv1alpha1.ConditionSecretsValid, metav1.ConditionTrue, controllers.ReasonSecretsValid)
	// The grant also covers the watch of the namespace's Secrets that
	// applies their changes at once: it synced and was not refused.
	nsField := `"namespace":"` + f.Namespace + `"`
	eventually(t, 30*time.Second, "the namespace's Secrets watched", func() (bool, string) {
		return logHas(`"watching the namespace's Secrets"`, nsField), "not yet"
	})
	if logHas(`"watching the namespace's Secrets is forbidden`, nsField) {
		t.Error("the watch of the namespace's Secrets was refused despite the grant")
	}
}

// logHas reports whether one line of the operator's log contains all of parts.
func logHas(parts ...string) bool {
	for line := range strings.Lines(logs.String()) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}
