package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// remoteHostLabel is the namespace label each remote test host admits.
const remoteHostLabel = "e2e.redis.incusops.io/remote-host"

// TestRemoteIncusHost reaches the lab incusd as a remote IncusHost over its
// HTTPS API on loopback: with a client certificate incusd trusts and the
// exact pin the host is Reachable and a formation on it becomes Ready;
// with a wrong pin, or a client certificate incusd does not trust, the host
// says why it is not reachable, and a formation on it gets the same reason
// and no instance.
func TestRemoteIncusHost(t *testing.T) {
	t.Parallel()
	c := stack(t)
	ctx := context.Background()

	lab, err := harness.NewLabRemote(ctx)
	if err != nil {
		testenv.Check(t, "the lab incusd's HTTPS API", err)
	}

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}

	run := uniqueName("rsf-e2e-remote")
	trustedCert, trustedKey := lab.TrustedClient(t, run)
	untrustedCert, untrustedKey := testenv.SelfSignedCert(t, run+"-untrusted")
	// Another certificate for the name incusd's own certificate is for.
	otherServerCert, _ := testenv.SelfSignedCert(t, "incus")

	cases := []struct {
		name             string
		clientCert       []byte
		clientKey        []byte
		serverCert       []byte
		reason, inReason string
	}{
		{name: "trusted client, exact pin", clientCert: trustedCert, clientKey: trustedKey, serverCert: lab.ServerCert},
		{name: "wrong pin", clientCert: trustedCert, clientKey: trustedKey, serverCert: otherServerCert,
			reason: controllers.ReasonIncusServerCertMismatch, inReason: "server certificate does not match the pinned certificate"},
		{name: "untrusted client", clientCert: untrustedCert, clientKey: untrustedKey, serverCert: lab.ServerCert,
			reason: controllers.ReasonIncusClientNotTrusted, inReason: "client certificate is not trusted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := uniqueName("remote")
			host := newRemoteHost(t, name, lab.URL, tc.clientCert, tc.clientKey, tc.serverCert)

			var cur *redisv1alpha1.IncusHost
			eventually(t, time.Minute, "the host's Reachable condition", func() (bool, string) {
				cur = &redisv1alpha1.IncusHost{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(host), cur); err != nil {
					return false, err.Error()
				}
				cond := meta.FindStatusCondition(cur.Status.Conditions, redisv1alpha1.HostConditionReachable)
				if cond == nil {
					return false, "no Reachable condition"
				}
				if tc.reason == "" {
					return cond.Status == metav1.ConditionTrue && cur.Status.ServerVersion != "", fmt.Sprintf("%+v", cur.Status)
				}
				return cond.Status == metav1.ConditionFalse && cond.Reason == tc.reason && strings.Contains(cond.Message, tc.inReason), fmt.Sprintf("%+v", cond)
			})
			t.Logf("IncusHost %s: %+v", name, meta.FindStatusCondition(cur.Status.Conditions, redisv1alpha1.HostConditionReachable))

			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{remoteHostLabel: name}}}
			if err := c.Create(ctx, ns); err != nil {
				t.Fatal(err)
			}
			f := newNamedFormation(t, name, formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
				f.Spec.Incus.HostRef = name
			}})

			if tc.reason == "" {
				start := time.Now()
				ready := waitReady(t, f, 5*time.Minute)
				t.Logf("Ready on the remote host after %v", time.Since(start).Round(time.Second))
				if ready.Status.IncusHost != name {
					t.Errorf("status.incusHost = %q, want %q", ready.Status.IncusHost, name)
				}
				if n := ownedInstances(t, f); n != int(ready.Spec.Members) {
					t.Errorf("%d instances carry the formation's UID, want %d", n, ready.Spec.Members)
				}
				return
			}

			degraded := waitCondition(t, f, time.Minute, redisv1alpha1.ConditionDegraded, metav1.ConditionTrue, tc.reason)
			cond := meta.FindStatusCondition(degraded.Status.Conditions, redisv1alpha1.ConditionDegraded)
			if !strings.Contains(cond.Message, tc.inReason) {
				t.Errorf("Degraded message does not say %q: %s", tc.inReason, cond.Message)
			}
			t.Logf("formation: Degraded %s: %s", cond.Reason, cond.Message)
			// Two resyncs later still nothing was created.
			time.Sleep(2 * 5 * time.Second)
			if n := ownedInstances(t, f); n != 0 {
				t.Errorf("%d instances created on a host the operator may not use", n)
			}
			if r := meta.FindStatusCondition(get(t, f).Status.Conditions, redisv1alpha1.ConditionReady); r != nil && r.Status == metav1.ConditionTrue {
				t.Errorf("Ready on a host the operator may not use: %+v", r)
			}
		})
	}
}

// newRemoteHost creates a remote IncusHost admitting the namespaces labelled
// with its name (then changed by mutate), its client certificate Secret in
// the operator's namespace, and deletes both at cleanup.
func newRemoteHost(t *testing.T, name, url string, clientCert, clientKey, serverCert []byte, mutate ...func(*redisv1alpha1.IncusHost)) *redisv1alpha1.IncusHost {
	t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-client", Namespace: operatorNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: clientCert, corev1.TLSPrivateKeyKey: clientKey},
	}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), secret) })
	return newHost(t, name, func(h *redisv1alpha1.IncusHost) {
		h.Spec.Remote = &redisv1alpha1.IncusHostRemote{URL: url, ClientCertificateSecretName: secret.Name, ServerCertificate: string(serverCert)}
		h.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{remoteHostLabel: name}}
		for _, m := range mutate {
			m(h)
		}
	})
}
