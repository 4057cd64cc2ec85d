package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/certs"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// TestTLS runs one formation with TLS on and client certificates required
// (the operator's CA): backends through go-redis and redis-py with the
// connection Secret, plaintext and certificate-less connections refused,
// replication linked over TLS, a renewal asked for early under a WAIT-1
// writer (no failover, no failed write, every member serving the new
// certificates), then the failover drill.
func TestTLS(t *testing.T) {
	t.Parallel()
	stack(t)
	password := strongPassword(t)
	f := newFormation(t, "e2etls", formationOpts{password: password, sentinelPass: strongPassword(t), mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.TLS = &redisv1alpha1.TLSSpec{Enabled: true, ClientAuth: redisv1alpha1.ClientAuthRequired}
	}})
	start := time.Now()
	cur := waitReady(t, f, 3*time.Minute)
	t.Logf("apply -> Ready with TLS in %s", time.Since(start).Round(10*time.Millisecond))
	waitCondition(t, f, 30*time.Second, redisv1alpha1.ConditionTLSReady, metav1.ConditionTrue, controllers.ReasonTLSServed)
	data := connectionData(t, f)
	checkConnectionSecret(t, f, data)
	if !strings.HasPrefix(string(data[config.EnvURL]), "rediss://") || len(data[config.EnvTLSCACert]) == 0 || len(data[config.EnvTLSClientCert]) == 0 || len(data[config.EnvTLSClientKey]) == 0 {
		t.Fatalf("the connection Secret lacks rediss:// or the TLS keys: scheme %q, keys %v", strings.SplitN(string(data[config.EnvURL]), ":", 2)[0], keysOf(data))
	}

	t.Run("plaintext and certificate-less connections refused", func(t *testing.T) {
		ctx := context.Background()
		caOnly, err := certs.ClientConfig(data[config.EnvTLSCACert], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		user := backendUser(f)
		for _, m := range cur.Status.Members {
			for _, port := range []int32{m.RedisPort, m.SentinelPort} {
				for what, tc := range map[string]*tls.Config{"plaintext": nil, "TLS without a client certificate": caOnly} {
					c := redisAs(m.Address, port, user, password, tc)
					err := c.Ping(ctx).Err()
					c.Close()
					if err == nil {
						t.Errorf("%s to %s:%d was accepted", what, m.Address, port)
					}
				}
			}
		}
	})

	t.Run("replication over TLS", func(t *testing.T) {
		ctx := context.Background()
		for _, m := range cur.Status.Members {
			r := adminRedis(t, cur, m.Address)
			settings, err := r.ConfigGet(ctx, "*port").Result()
			if err != nil {
				r.Close()
				t.Fatalf("%s: %v", m.Name, err)
			}
			tlsRepl, _ := r.ConfigGet(ctx, "tls-replication").Result()
			info, _ := r.Info(ctx, "replication").Result()
			r.Close()
			if settings["port"] != "0" || settings["tls-port"] != strconv.Itoa(int(m.RedisPort)) || tlsRepl["tls-replication"] != "yes" {
				t.Errorf("%s: port %q tls-port %q tls-replication %q; want 0, %d, yes", m.Name, settings["port"], settings["tls-port"], tlsRepl["tls-replication"], m.RedisPort)
			}
			switch m.Role {
			case redisv1alpha1.RoleMaster:
				if !strings.Contains(info, "connected_slaves:2") || strings.Count(info, "state=online") != 2 {
					t.Errorf("master %s does not have two online replicas:\n%s", m.Name, info)
				}
			default:
				if !strings.Contains(info, "master_link_status:up") {
					t.Errorf("replica %s link is not up:\n%s", m.Name, info)
				}
			}
		}
	})

	t.Run("go-redis and redis-py through Sentinel", func(t *testing.T) {
		ctx := context.Background()
		c, err := redisclient.FromSecretData(data, redisclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(ctx, "tls:go", "written over TLS", 0).Err(); err != nil {
			t.Fatalf("go-redis SET: %v", err)
		}
		if v, err := c.Get(ctx, "tls:go").Result(); err != nil || v != "written over TLS" {
			t.Fatalf("go-redis GET: %q %v", v, err)
		}
		res, err := runPythonProbes(ctx, data, "tls:py:")
		if err != nil {
			t.Fatal(err)
		}
		for _, probe := range []string{"SENTINEL discovery", "SET", "GET", "PUBLISH/SUBSCRIBE"} {
			if r, ok := res[probe]; !ok || !r.OK {
				t.Errorf("redis-py %s over TLS: %+v (ran %v)", probe, r, len(res))
			}
		}
		// Over TLS the backend user is still the backend user.
		if r := res["CONFIG SET"]; r.OK || r.ErrorClass != "NoPermissionError" {
			t.Errorf("redis-py CONFIG SET over TLS: %+v, want NoPermissionError", r)
		}
	})

	t.Run("renewal under writes", func(t *testing.T) {
		before := servedCertificates(t, cur, data[config.EnvTLSCACert], data[config.EnvTLSClientCert], data[config.EnvTLSClientKey])
		failovers := get(t, f).Status.Failovers
		w, cache := startWriter(t, f)
		time.Sleep(time.Second)
		kubectl(t, "annotate", "rsf", "-n", f.Namespace, f.Name, "--overwrite", redisv1alpha1.AnnotationRenewCertificates+"=e2e-1")
		renewed := waitCondition(t, f, 2*time.Minute, redisv1alpha1.ConditionTLSReady, metav1.ConditionTrue, controllers.ReasonTLSServed)
		eventually(t, time.Minute, "the renewal recorded and served", func() (bool, string) {
			renewed = get(t, f)
			if renewed.Status.TLS == nil || renewed.Status.TLS.RenewRequest != "e2e-1" || !meta.IsStatusConditionTrue(renewed.Status.Conditions, redisv1alpha1.ConditionTLSReady) {
				return false, fmt.Sprintf("status.tls %+v", renewed.Status.TLS)
			}
			return true, ""
		})
		time.Sleep(time.Second)
		st := finishWriter(t, f, w, cache)
		if st.Failed != 0 {
			t.Errorf("%d writes failed during the renewal (%s)", st.Failed, st.ErrorKinds())
		}
		if renewed.Status.Failovers != failovers {
			t.Errorf("the renewal caused %d failovers", renewed.Status.Failovers-failovers)
		}
		issued := issuedCertificates(t, f)
		after := servedCertificates(t, renewed, data[config.EnvTLSCACert], data[config.EnvTLSClientCert], data[config.EnvTLSClientKey])
		for endpoint, fp := range after {
			member := strings.SplitN(endpoint, " ", 2)[0]
			if fp == before[endpoint] || fp != issued[member] {
				t.Errorf("%s serves %s (before the renewal %s, issued now %s)", endpoint, fp[:12], before[endpoint][:12], issued[member][:12])
			}
		}
	})

	t.Run("failover drill", func(t *testing.T) { failoverDrill(t, f) })
}

// servedCertificates are the SHA-256 of the leaf each member presents on
// its redis and sentinel ports, by "<member> <port>", from a TLS handshake
// trusting caPEM and presenting the client certificate, if any.
func servedCertificates(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, caPEM, certPEM, keyPEM []byte) map[string]string {
	t.Helper()
	tc, err := certs.ClientConfig(caPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range f.Status.Members {
		for _, port := range []int32{m.RedisPort, m.SentinelPort} {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", net.JoinHostPort(m.Address, strconv.Itoa(int(port))), tc)
			if err != nil {
				t.Fatalf("TLS handshake with %s port %d: %v", m.Name, port, err)
			}
			sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
			conn.Close()
			out[fmt.Sprintf("%s %d", m.Name, port)] = hex.EncodeToString(sum[:])
		}
	}
	return out
}

// issuedCertificates are the fingerprints of the members' certificates in
// the operator's TLS Secret, by member.
func issuedCertificates(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) map[string]string {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-tls"}, s); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range s.Data {
		if member, ok := strings.CutSuffix(k, ".crt"); ok && member != "ca" && member != "client" {
			fp, err := certs.Fingerprint(v)
			if err != nil {
				t.Fatal(err)
			}
			out[member] = fp
		}
	}
	return out
}

func keysOf(m map[string][]byte) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// TestTLSUserSecret: a formation whose certificate comes from a Secret in
// cert-manager's layout. Refused material (no Secret, a certificate for
// other addresses) creates nothing; once valid, the formation comes up on
// it. Then every kind of bad replacement (a key of another certificate, an
// expired certificate, a CA that did not sign it) is refused with its
// reason and an Event while the members keep serving the current
// certificate with no restart and no failover; a certificate from a new
// CA is applied live, both CAs trusted until every member serves it, and
// client certificates required throughout (the operator dials with the
// previous CA's until every member trusts the new one).
func TestTLSUserSecret(t *testing.T) {
	t.Parallel()
	stack(t)
	const secret = "user-tls"
	f := newFormation(t, "e2etlsuser", formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.TLS = &redisv1alpha1.TLSSpec{Enabled: true, SecretName: secret, ClientAuth: redisv1alpha1.ClientAuthRequired}
	}})
	past := time.Now().Add(-72 * time.Hour)
	ca := testenv.NewCA(t, "e2e user CA", past)
	caPEM := ca.CertPEM

	refused := func(reason string) *redisv1alpha1.RedisSentinelFormation {
		t.Helper()
		cur := waitCondition(t, f, time.Minute, redisv1alpha1.ConditionTLSReady, metav1.ConditionFalse, reason)
		eventually(t, 30*time.Second, "a Warning Event "+reason, func() (bool, string) {
			for _, e := range events(t, f, reason) {
				if e.Type == corev1.EventTypeWarning {
					return true, ""
				}
			}
			return false, "none yet"
		})
		return cur
	}
	noInstances := func() {
		t.Helper()
		owned, err := incusSrv.ListInstances(context.Background(), "user.rsf.formation-uid", string(get(t, f).UID))
		if err != nil || len(owned) != 0 {
			t.Fatalf("instances created with refused TLS material: %d (%v)", len(owned), err)
		}
	}

	refused(controllers.ReasonTLSSecretNotFound)
	noInstances()

	crt, key := ca.Serving(t, []string{"10.77.0.254"}, time.Now(), 24*time.Hour)
	putTLSSecret(t, f.Namespace, secret, caPEM, crt, key)
	cur := refused(string(certs.ReasonAddressNotCovered))
	noInstances()
	var addrs []string
	for _, m := range cur.Status.Members {
		addrs = append(addrs, m.Address)
	}
	if c := meta.FindStatusCondition(cur.Status.Conditions, redisv1alpha1.ConditionTLSReady); !strings.Contains(c.Message, addrs[0]) {
		t.Fatalf("the refusal does not name the members' addresses %v: %s", addrs, c.Message)
	}

	good, goodKey := ca.Serving(t, addrs, time.Now(), 24*time.Hour)
	putTLSSecret(t, f.Namespace, secret, caPEM, good, goodKey)
	cur = waitReady(t, f, 3*time.Minute)
	waitCondition(t, f, 30*time.Second, redisv1alpha1.ConditionTLSReady, metav1.ConditionTrue, controllers.ReasonTLSServed)
	goodFP, _ := certs.Fingerprint(good)
	serving := servedCertificates(t, cur, caPEM, good, goodKey)
	for endpoint, fp := range serving {
		if fp != goodFP {
			t.Fatalf("%s serves %s, not the Secret's certificate", endpoint, fp[:12])
		}
	}
	redisIDs, sentinelIDs := redisRunIDs(t, cur), sentinelRunIDs(t, cur)

	other := testenv.NewCA(t, "another CA", past)
	otherPEM := other.CertPEM
	_, strayKey := ca.Serving(t, addrs, time.Now(), 24*time.Hour)
	expired, expiredKey := ca.Serving(t, addrs, past, time.Hour)
	foreign, foreignKey := other.Serving(t, addrs, time.Now(), 24*time.Hour)
	for _, bad := range []struct {
		reason       certs.Reason
		ca, crt, key []byte
	}{
		{certs.ReasonKeyMismatch, caPEM, good, strayKey},
		{certs.ReasonExpired, caPEM, expired, expiredKey},
		{certs.ReasonNotSignedByCA, caPEM, foreign, foreignKey},
	} {
		putTLSSecret(t, f.Namespace, secret, bad.ca, bad.crt, bad.key)
		refused(string(bad.reason))
		time.Sleep(2 * time.Second) // passes that could wrongly apply it
		now := get(t, f)
		if got := servedCertificates(t, now, caPEM, good, goodKey); !maps.Equal(got, serving) {
			t.Fatalf("%s: the members no longer serve the last good certificate", bad.reason)
		}
		if !slices.Equal(redisRunIDs(t, now), redisIDs) || !slices.Equal(sentinelRunIDs(t, now), sentinelIDs) || now.Status.Failovers != 0 {
			t.Fatalf("%s: a server restarted or failed over (failovers %d)", bad.reason, now.Status.Failovers)
		}
	}

	// A new CA: trusted beside the old one until every member serves its
	// certificate, then alone; redis-servers take it live, sentinels at a
	// restart each.
	renewed, renewedKey := other.Serving(t, addrs, time.Now(), 24*time.Hour)
	putTLSSecret(t, f.Namespace, secret, otherPEM, renewed, renewedKey)
	eventually(t, 2*time.Minute, "the new CA alone trusted and served", func() (bool, string) {
		cur = get(t, f)
		st := cur.Status.TLS
		return st != nil && st.TrustedCA == string(otherPEM) && meta.IsStatusConditionTrue(cur.Status.Conditions, redisv1alpha1.ConditionTLSReady), fmt.Sprintf("status.tls %+v", st)
	})
	renewedFP, _ := certs.Fingerprint(renewed)
	for endpoint, fp := range servedCertificates(t, cur, otherPEM, renewed, renewedKey) {
		if fp != renewedFP {
			t.Errorf("%s serves %s after the CA change, not the new certificate", endpoint, fp[:12])
		}
	}
	if !slices.Equal(redisRunIDs(t, cur), redisIDs) || cur.Status.Failovers != 0 {
		t.Errorf("the CA change restarted a redis-server or failed over (failovers %d)", cur.Status.Failovers)
	}
	waitReady(t, f, time.Minute)
}

// putTLSSecret creates or replaces a Secret in cert-manager's layout.
func putTLSSecret(t *testing.T, ns, name string, caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS}
	_, err := controllerutil.CreateOrUpdate(context.Background(), k8s, s, func() error {
		s.Data = map[string][]byte{"ca.crt": caPEM, "tls.crt": certPEM, "tls.key": keyPEM}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// redisRunIDs are the members' redis-server run IDs: a restart changes it.
func redisRunIDs(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) []string {
	t.Helper()
	var ids []string
	for _, m := range f.Status.Members {
		c := adminRedis(t, f, m.Address)
		info, err := c.InfoMap(context.Background(), "server").Result()
		_ = c.Close()
		if err != nil {
			t.Fatalf("INFO server on %s: %v", m.Name, err)
		}
		ids = append(ids, info["Server"]["run_id"])
	}
	return ids
}
