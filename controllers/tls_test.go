package controllers

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/certs"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin/redisfake"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// The addresses incusfake gives the test formation's three members.
var testAddresses = []string{"10.99.0.2", "10.99.0.3", "10.99.0.4"}

const userTLSSecret = "cache-certs"

// withTLS turns TLS on with clientAuth and, when secretName is set, the
// user's Secret.
func withTLS(clientAuth redisv1alpha1.ClientAuth, secretName string) func(*redisv1alpha1.RedisSentinelFormation) {
	return func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.TLS = &redisv1alpha1.TLSSpec{Enabled: true, ClientAuth: clientAuth, SecretName: secretName,
			CertificateDuration: &metav1.Duration{Duration: defaultCertificateDuration}, RenewBefore: &metav1.Duration{Duration: defaultRenewBefore}}
	}
}

func newTestCA(t *testing.T, name string) testenv.CA {
	t.Helper()
	return testenv.NewCA(t, name, testStart.Add(-72*time.Hour))
}

// userSecret is a Secret in cert-manager's layout.
func userSecret(ca, crt, key []byte) *corev1.Secret {
	data := map[string][]byte{"ca.crt": ca, "tls.crt": crt, "tls.key": key}
	for k, v := range data {
		if v == nil {
			delete(data, k)
		}
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: userTLSSecret}, Data: data}
}

// goodUserSecret covers the test formation's addresses for 90 days.
func goodUserSecret(t *testing.T, ca testenv.CA) *corev1.Secret {
	crt, key := ca.Serving(t, testAddresses, testStart, 90*24*time.Hour)
	return userSecret(ca.CertPEM, crt, key)
}

// tlsEnv is a world with a TLS formation and, when set, the user's Secret.
func tlsEnv(t *testing.T, clientAuth redisv1alpha1.ClientAuth, user *corev1.Secret) *env {
	f := newFormation(testName)
	name := ""
	if user != nil {
		name = user.Name
	}
	withTLS(clientAuth, name)(f)
	objs := []client.Object{f, passwordSecret(redisSecretName, testPassword), passwordSecret(sentinelSecretName, testSentinelPassword)}
	if user != nil {
		objs = append(objs, user)
	}
	return newEnv(t, objs...)
}

// pass runs one pass and moves the clock as the workqueue would.
func (e *env) pass(r *FormationReconciler) {
	e.t.Helper()
	res, err := e.reconcile(r, testKey)
	e.advanceFor(res, err)
}

// tlsCounts sums the members' TLS reloads (CONFIG SET) and sentinel
// restarts.
func (e *env) tlsCounts() (reloads, restarts int) {
	for i := 1; i <= 3; i++ {
		st := e.world.TLS(testInstance(i))
		reloads, restarts = reloads+st.Reloads, restarts+st.SentinelRestarts
	}
	return reloads, restarts
}

// memberTLSFile is the content of a TLS file in member index's container.
func (e *env) memberTLSFile(index int, path string) []byte {
	e.t.Helper()
	file, ok := e.incus.File(testInstance(index), path)
	if !ok {
		return nil
	}
	return file.Content
}

func tlsCondition(f *redisv1alpha1.RedisSentinelFormation) *metav1.Condition {
	return meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionTLSReady)
}

// tlsRolledOut: every member's redis-server and sentinel took the same
// material (status), and what they loaded (the simulation) is their files.
func (e *env) tlsRolledOut(f *redisv1alpha1.RedisSentinelFormation) bool {
	for i, m := range f.Status.Members {
		if m.TLSHash == "" || m.TLSHash != m.SentinelTLSHash {
			return false
		}
		st := e.world.TLS(testInstance(i + 1))
		want := redisfake.TLSFiles{Cert: e.memberTLSFile(i+1, redisEngine.TLSMemberFile), CA: e.memberTLSFile(i+1, redisEngine.TLSCAFile)}
		for _, got := range []redisfake.TLSFiles{st.Redis, st.Sentinel} {
			if !bytes.Equal(got.Cert, want.Cert) || !bytes.Equal(got.CA, want.CA) {
				return false
			}
		}
	}
	return true
}

func hasWarning(e *env, reason string) bool {
	for _, ev := range e.recorder.events() {
		if strings.HasPrefix(ev, corev1.EventTypeWarning+" "+reason+" ") {
			return true
		}
	}
	return false
}

func hasEvent(e *env, reason string) bool {
	for _, ev := range e.recorder.events() {
		if strings.Contains(ev, " "+reason+" ") {
			return true
		}
	}
	return false
}

// TestTLSOperatorCA: a formation with the operator's CA and client
// certificates required comes up with a certificate per member for its
// address, hands backends rediss:// with the CA and a client certificate,
// and once Ready issues and writes nothing more.
func TestTLSOperatorCA(t *testing.T) {
	e := tlsEnv(t, redisv1alpha1.ClientAuthRequired, nil)
	r := e.newReconciler()
	e.converge(r, testKey, 60)
	f := e.formation(testKey)
	if c := tlsCondition(f); c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonTLSServed {
		t.Fatalf("TLSReady %+v", c)
	}
	secret := e.secret(testName + "-tls")
	if secret == nil || !metav1.IsControlledBy(secret, f) {
		t.Fatalf("TLS Secret %v not owned by the formation", secret)
	}
	data := secret.Data
	if _, err := certs.ParseAuthority(data["ca.crt"], data["ca.key"]); err != nil {
		t.Fatalf("ca.crt/ca.key: %v", err)
	}
	now := e.clock.Now()
	want := []string{"ca.crt", "ca.key", "client.crt", "client.key"}
	for _, m := range f.Status.Members {
		want = append(want, m.Name+".crt", m.Name+".key")
		if _, err := certs.Check(certs.Bundle{CA: data["ca.crt"], Cert: data[m.Name+".crt"], Key: data[m.Name+".key"]}, []string{m.Address}, true, now); err != nil {
			t.Errorf("%s's certificate for %s: %v", m.Name, m.Address, err)
		}
		if m.TLSHash == "" || m.TLSHash != m.SentinelTLSHash {
			t.Errorf("%s: tlsHash %q, sentinelTLSHash %q", m.Name, m.TLSHash, m.SentinelTLSHash)
		}
	}
	if got := sortedKeys(data); strings.Join(got, " ") != strings.Join(sortedKeys(setOf(want...)), " ") {
		t.Errorf("TLS Secret keys %v, want %v", got, sortedKeys(setOf(want...)))
	}
	if _, err := certs.CheckClient(certs.Bundle{CA: data["ca.crt"], Cert: data["client.crt"], Key: data["client.key"]}, now); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if !e.tlsRolledOut(f) {
		t.Error("the members did not load their TLS files")
	}
	for i := range f.Status.Members {
		if got := e.memberTLSFile(i+1, redisEngine.TLSCAFile); !bytes.Equal(got, data["ca.crt"]) {
			t.Errorf("member %d trusts %q", i+1, got)
		}
	}
	conn := e.secret(testName + "-connection").Data
	if u := string(conn[config.EnvURL]); !strings.HasPrefix(u, "rediss://") {
		t.Errorf("REDIS_URL %q", u)
	}
	if !bytes.Equal(conn[config.EnvTLSCACert], data["ca.crt"]) || !bytes.Equal(conn[config.EnvTLSClientCert], data["client.crt"]) ||
		!bytes.Equal(conn[config.EnvTLSClientKey], data["client.key"]) {
		t.Errorf("connection Secret TLS material: keys %v", sortedKeys(conn))
	}
	if st := f.Status.TLS; st == nil || st.TrustedCA != string(data["ca.crt"]) || st.NotAfter == nil || st.RenewAt == nil ||
		!st.RenewAt.Time.Equal(st.NotAfter.Add(-defaultRenewBefore)) {
		t.Errorf("status.tls %+v", st)
	}
	if p := e.world.Problems(); len(p) > 0 {
		t.Errorf("members met configuration problems: %v", p)
	}

	// Settled: further passes issue nothing and write nothing.
	tlsVersion, connVersion := secret.ResourceVersion, e.secret(testName+"-connection").ResourceVersion
	reloads, restarts := e.tlsCounts()
	e.incus.ResetCalls()
	events := len(e.recorder.events())
	for range 3 {
		e.pass(r)
	}
	if v := e.secret(testName + "-tls").ResourceVersion; v != tlsVersion {
		t.Errorf("the TLS Secret was written again (%s -> %s)", tlsVersion, v)
	}
	if v := e.secret(testName + "-connection").ResourceVersion; v != connVersion {
		t.Errorf("the connection Secret was written again")
	}
	if n := e.incus.Calls()[incusfake.WriteFile]; n != 0 {
		t.Errorf("%d files written", n)
	}
	if r2, s2 := e.tlsCounts(); r2 != reloads || s2 != restarts {
		t.Errorf("reloads %d -> %d, sentinel restarts %d -> %d", reloads, r2, restarts, s2)
	}
	if later := e.recorder.events()[events:]; len(later) > 0 {
		t.Errorf("Events of settled passes: %v", later)
	}
	if f := e.formation(testKey); !isReady(f) || tlsCondition(f).Status != metav1.ConditionTrue {
		t.Errorf("no longer Ready:\n%s", describe(f))
	}
}

func setOf(keys ...string) map[string]bool {
	out := map[string]bool{}
	for _, k := range keys {
		out[k] = true
	}
	return out
}

// TestTLSRenewal: certificates renewed on request (the annotation, carried
// out once) or when due are issued once; every redis-server reloads them
// with CONFIG SET, then the sentinels restart one per pass and only while
// every sentinel answers; nothing fails over.
func TestTLSRenewal(t *testing.T) {
	t.Run("on request", func(t *testing.T) {
		e := tlsEnv(t, redisv1alpha1.ClientAuthRequired, nil)
		r := e.newReconciler()
		e.converge(r, testKey, 60)
		f := e.formation(testKey)
		master, epoch := e.masterOfWorld(f)
		before := e.secret(testName + "-tls").Data
		reloads0, restarts0 := e.tlsCounts()

		f.Annotations = map[string]string{redisv1alpha1.AnnotationRenewCertificates: "now-1"}
		if err := e.client.Update(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		e.pass(r)
		f = e.formation(testKey)
		after := e.secret(testName + "-tls").Data
		if f.Status.TLS == nil || f.Status.TLS.RenewRequest != "now-1" {
			t.Fatalf("status.tls %+v: the request is not recorded", f.Status.TLS)
		}
		if !bytes.Equal(after["ca.crt"], before["ca.crt"]) || !bytes.Equal(after["ca.key"], before["ca.key"]) {
			t.Error("the CA was renewed")
		}
		for _, k := range []string{"cache-1.crt", "cache-2.crt", "cache-3.crt", "client.crt"} {
			if bytes.Equal(after[k], before[k]) {
				t.Errorf("%s not renewed", k)
			}
		}
		if r, s := e.tlsCounts(); r != reloads0 || s != restarts0 {
			t.Errorf("material applied in the pass that issued it: reloads %d, restarts %d", r-reloads0, s-restarts0)
		}

		// The next pass reloads every redis-server, at once.
		e.pass(r)
		for i := 1; i <= 3; i++ {
			if st := e.world.TLS(testInstance(i)); st.Reloads != 1 || st.SentinelRestarts != 0 {
				t.Errorf("member %d: reloads %d, sentinel restarts %d", i, st.Reloads, st.SentinelRestarts)
			}
			if !bytes.Equal(e.world.TLS(testInstance(i)).Redis.Cert, certs.CombinedPEM(after[testName+"-"+strconv.Itoa(i)+".crt"], after[testName+"-"+strconv.Itoa(i)+".key"])) {
				t.Errorf("member %d's redis-server serves another certificate", i)
			}
		}

		// A sentinel that does not answer holds every restart back.
		e.world.SetSentinelUnreachable(testInstance(2), true)
		for range 5 {
			e.pass(r)
		}
		if _, s := e.tlsCounts(); s != restarts0 {
			t.Fatalf("%d sentinels restarted while one did not answer", s-restarts0)
		}
		e.world.SetSentinelUnreachable(testInstance(2), false)

		// Then one sentinel per pass.
		restarted := 0
		for pass := 0; pass < 20 && !e.tlsRolledOut(e.formation(testKey)); pass++ {
			_, s0 := e.tlsCounts()
			e.pass(r)
			_, s1 := e.tlsCounts()
			if s1-s0 > 1 {
				t.Fatalf("%d sentinels restarted in one pass", s1-s0)
			}
			restarted += s1 - s0
		}
		if restarted != 3 {
			t.Errorf("%d sentinel restarts, want 3", restarted)
		}
		e.converge(r, testKey, 20)
		f = e.formation(testKey)
		if !e.tlsRolledOut(f) || tlsCondition(f).Status != metav1.ConditionTrue {
			t.Fatalf("not rolled out: %+v\n%s", tlsCondition(f), describe(f))
		}
		if m, ep := e.masterOfWorld(f); m != master || ep != epoch || hasEvent(e, string(actSentinelFailover)) {
			t.Errorf("master %s epoch %d -> %s epoch %d: a failover was asked for", master, epoch, m, ep)
		}
		// Carried out once: the annotation left in place renews nothing more.
		version := e.secret(testName + "-tls").ResourceVersion
		reloads, restarts := e.tlsCounts()
		for range 3 {
			e.pass(r)
		}
		if r2, s2 := e.tlsCounts(); e.secret(testName+"-tls").ResourceVersion != version || r2 != reloads || s2 != restarts {
			t.Error("the handled request renewed the certificates again")
		}
	})

	t.Run("when due", func(t *testing.T) {
		e := tlsEnv(t, redisv1alpha1.ClientAuthNone, nil)
		r := e.newReconciler()
		e.converge(r, testKey, 60)
		f := e.formation(testKey)
		renewAt := f.Status.TLS.RenewAt.Time
		before := e.secret(testName + "-tls").Data
		master, epoch := e.masterOfWorld(f)

		// Just before renewAt nothing happens.
		e.clock.Advance(renewAt.Sub(e.clock.Now()) - time.Minute)
		for range 3 {
			e.pass(r)
		}
		if after := e.secret(testName + "-tls").Data; !bytes.Equal(after["cache-1.crt"], before["cache-1.crt"]) {
			t.Fatal("renewed before renewAt")
		}
		e.clock.Advance(2 * time.Minute)
		e.pass(r)
		after := e.secret(testName + "-tls").Data
		for _, k := range []string{"cache-1.crt", "cache-2.crt", "cache-3.crt", "client.crt"} {
			if bytes.Equal(after[k], before[k]) {
				t.Errorf("%s not renewed when due", k)
			}
		}
		issued := e.secret(testName + "-tls").ResourceVersion
		for pass := 0; pass < 30; pass++ {
			reloads, s0 := e.tlsCounts()
			if s0 == 3 {
				break
			}
			e.pass(r)
			r1, s1 := e.tlsCounts()
			if s1-s0 > 1 || (s1 > s0 && reloads < 3) {
				t.Fatalf("pass %d: %d sentinels restarted, %d redis-servers reloaded before", pass, s1-s0, reloads)
			}
			if r1 != reloads && r1 != 3 {
				t.Fatalf("pass %d: %d redis-servers reloaded, want all at once", pass, r1)
			}
		}
		for range 3 {
			e.pass(r)
		}
		e.converge(r, testKey, 20)
		f = e.formation(testKey)
		if v := e.secret(testName + "-tls").ResourceVersion; v != issued {
			t.Error("the certificates were issued more than once")
		}
		if reloads, restarts := e.tlsCounts(); reloads != 3 || restarts != 3 || !e.tlsRolledOut(f) {
			t.Errorf("reloads %d, sentinel restarts %d, rolled out %v", reloads, restarts, e.tlsRolledOut(f))
		}
		if !f.Status.TLS.RenewAt.Time.After(renewAt) {
			t.Errorf("renewAt %s, was %s", f.Status.TLS.RenewAt, renewAt)
		}
		if m, ep := e.masterOfWorld(f); m != master || ep != epoch {
			t.Errorf("master %s epoch %d -> %s epoch %d", master, epoch, m, ep)
		}
	})
}

// badUserSecrets are user Secrets refused for each reason, with it.
func badUserSecrets(t *testing.T, ca testenv.CA) []struct {
	name, reason string
	secret       *corev1.Secret // nil: the Secret is missing
} {
	good := goodUserSecret(t, ca)
	other := newTestCA(t, "another CA")
	_, otherKey := ca.Serving(t, testAddresses, testStart, 90*24*time.Hour)
	expired, expiredKey := ca.Serving(t, testAddresses, testStart.Add(-48*time.Hour), 24*time.Hour)
	uncovered, uncoveredKey := ca.Serving(t, []string{"10.99.0.2", "10.99.0.3"}, testStart, 90*24*time.Hour)
	foreign, foreignKey := other.Serving(t, testAddresses, testStart, 90*24*time.Hour)
	return []struct {
		name, reason string
		secret       *corev1.Secret
	}{
		{"missing Secret", ReasonTLSSecretNotFound, nil},
		{"missing key", ReasonTLSSecretKey, userSecret(ca.CertPEM, good.Data["tls.crt"], nil)},
		{"key of another certificate", string(certs.ReasonKeyMismatch), userSecret(ca.CertPEM, good.Data["tls.crt"], otherKey)},
		{"expired", string(certs.ReasonExpired), userSecret(ca.CertPEM, expired, expiredKey)},
		{"address not covered", string(certs.ReasonAddressNotCovered), userSecret(ca.CertPEM, uncovered, uncoveredKey)},
		{"not signed by ca.crt", string(certs.ReasonNotSignedByCA), userSecret(ca.CertPEM, foreign, foreignKey)},
	}
}

// TestTLSUserSecretRefused: a user Secret that cannot serve the members is
// refused with its reason (TLSReady False, a Warning Event): a new
// formation creates nothing, and a Ready one applies nothing and its
// members keep what they serve.
// refusedWith checks the formation's TLSReady is False with reason and a
// Warning Event says so, and returns the formation.
func refusedWith(t *testing.T, e *env, reason string) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	f := e.formation(testKey)
	if c := tlsCondition(f); c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
		t.Fatalf("TLSReady %+v, want False %s", c, reason)
	}
	if !hasWarning(e, reason) {
		t.Errorf("no Warning Event %s: %v", reason, e.recorder.events())
	}
	return f
}

func TestTLSUserSecretRefused(t *testing.T) {
	ca := newTestCA(t, "user CA")
	for _, tc := range badUserSecrets(t, ca) {
		t.Run("new formation, "+tc.name, func(t *testing.T) {
			e := tlsEnv(t, redisv1alpha1.ClientAuthNone, tc.secret)
			e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.TLS.SecretName = userTLSSecret })
			r := e.newReconciler()
			for range 8 {
				e.pass(r)
			}
			refusedWith(t, e, tc.reason)
			if n := e.incus.Calls()[incusfake.CreateInstance]; n != 0 {
				t.Errorf("%d instances created", n)
			}
			if e.secret(testName+"-connection") != nil {
				t.Error("a connection Secret was written")
			}
		})
	}
	for _, tc := range badUserSecrets(t, ca) {
		t.Run("Ready formation, "+tc.name, func(t *testing.T) {
			e := tlsEnv(t, redisv1alpha1.ClientAuthNone, goodUserSecret(t, ca))
			r := e.newReconciler()
			e.converge(r, testKey, 60)
			before := e.formation(testKey)
			if !e.tlsRolledOut(before) {
				t.Fatal("not rolled out")
			}
			reloads, restarts := e.tlsCounts()
			current := e.secret(userTLSSecret)
			if tc.secret == nil {
				if err := e.client.Delete(context.Background(), current); err != nil {
					t.Fatal(err)
				}
			} else {
				current.Data = tc.secret.Data
				if err := e.client.Update(context.Background(), current); err != nil {
					t.Fatal(err)
				}
			}
			e.incus.ResetCalls()
			for range 6 {
				e.pass(r)
			}
			f := refusedWith(t, e, tc.reason)
			if r2, s2 := e.tlsCounts(); r2 != reloads || s2 != restarts {
				t.Errorf("material applied: reloads %d -> %d, sentinel restarts %d -> %d", reloads, r2, restarts, s2)
			}
			if n := e.incus.Calls()[incusfake.WriteFile]; n != 0 {
				t.Errorf("%d files written", n)
			}
			for i, m := range f.Status.Members {
				if m.TLSHash != before.Status.Members[i].TLSHash || m.SentinelTLSHash != before.Status.Members[i].SentinelTLSHash {
					t.Errorf("%s: tlsHash %s/%s, was %s/%s", m.Name, m.TLSHash, m.SentinelTLSHash, before.Status.Members[i].TLSHash, before.Status.Members[i].SentinelTLSHash)
				}
			}
		})
	}
}

// TestTLSUserCAChange: when the user Secret moves to another CA, the
// members first trust both CAs (status.tls.trustedCA keeps the old one)
// while they take the new certificate; once every one serves it, they are
// given the new CA alone (a second round).
func TestTLSUserCAChange(t *testing.T) {
	oldCA, newCA := newTestCA(t, "old CA"), newTestCA(t, "new CA")
	e := tlsEnv(t, redisv1alpha1.ClientAuthNone, goodUserSecret(t, oldCA))
	r := e.newReconciler()
	e.converge(r, testKey, 60)
	if f := e.formation(testKey); f.Status.TLS == nil || f.Status.TLS.TrustedCA != string(oldCA.CertPEM) {
		t.Fatalf("status.tls %+v", f.Status.TLS)
	}
	master, epoch := e.masterOfWorld(e.formation(testKey))
	secret := e.secret(userTLSSecret)
	secret.Data = goodUserSecret(t, newCA).Data
	if err := e.client.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	both := append(append(bytes.Clone(newCA.CertPEM), '\n'), oldCA.CertPEM...)
	newCert := certs.CombinedPEM(secret.Data["tls.crt"], secret.Data["tls.key"])

	// First round: the new certificate with both CAs trusted.
	for pass := 0; pass < 30 && e.tlsCountsBelow(3); pass++ {
		e.pass(r)
		f := e.formation(testKey)
		if f.Status.TLS.TrustedCA != string(oldCA.CertPEM) {
			t.Fatalf("pass %d: trustedCA moved to the new CA before every member served it", pass)
		}
		for i := 1; i <= 3; i++ {
			if ca := e.memberTLSFile(i, redisEngine.TLSCAFile); !bytes.Equal(ca, oldCA.CertPEM) && !bytes.Equal(ca, both) {
				t.Fatalf("pass %d: member %d trusts %q", pass, i, ca)
			}
		}
	}
	for i := 1; i <= 3; i++ {
		st := e.world.TLS(testInstance(i))
		if !bytes.Equal(st.Redis.CA, both) || !bytes.Equal(st.Sentinel.CA, both) || !bytes.Equal(st.Redis.Cert, newCert) || !bytes.Equal(st.Sentinel.Cert, newCert) {
			t.Errorf("member %d after the first round does not serve the new certificate trusting both CAs", i)
		}
	}
	if conn := e.secret(testName + "-connection").Data; !bytes.Equal(conn[config.EnvTLSCACert], both) {
		t.Errorf("while the CA changes, the connection Secret's CA is %q, want both", conn[config.EnvTLSCACert])
	}
	// Second round: the new CA alone.
	for pass := 0; pass < 30 && e.tlsCountsBelow(6); pass++ {
		e.pass(r)
	}
	e.converge(r, testKey, 20)
	f := e.formation(testKey)
	if f.Status.TLS.TrustedCA != string(newCA.CertPEM) {
		t.Errorf("trustedCA is not the new CA")
	}
	for i := 1; i <= 3; i++ {
		st := e.world.TLS(testInstance(i))
		if !bytes.Equal(st.Redis.CA, newCA.CertPEM) || !bytes.Equal(st.Sentinel.CA, newCA.CertPEM) || !bytes.Equal(st.Redis.Cert, newCert) {
			t.Errorf("member %d does not trust the new CA alone", i)
		}
		if st.Reloads != 2 || st.SentinelRestarts != 2 {
			t.Errorf("member %d: %d reloads, %d sentinel restarts; want 2 rounds", i, st.Reloads, st.SentinelRestarts)
		}
	}
	if c := tlsCondition(f); c.Status != metav1.ConditionTrue || !e.tlsRolledOut(f) {
		t.Errorf("TLSReady %+v", c)
	}
	if conn := e.secret(testName + "-connection").Data; !bytes.Equal(conn[config.EnvTLSCACert], newCA.CertPEM) {
		t.Errorf("the connection Secret's CA is %q", conn[config.EnvTLSCACert])
	}
	if m, ep := e.masterOfWorld(f); m != master || ep != epoch {
		t.Errorf("master %s epoch %d -> %s epoch %d", master, epoch, m, ep)
	}
}

// tlsCountsBelow: fewer than n sentinel restarts in all.
func (e *env) tlsCountsBelow(n int) bool {
	_, restarts := e.tlsCounts()
	return restarts < n
}
