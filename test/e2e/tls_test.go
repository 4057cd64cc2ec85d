package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/certs"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
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
		before := servedCertificates(t, cur, data)
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
		after := servedCertificates(t, renewed, data)
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
// with the connection Secret's CA and client certificate.
func servedCertificates(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, data map[string][]byte) map[string]string {
	t.Helper()
	tc, err := certs.ClientConfig(data[config.EnvTLSCACert], data[config.EnvTLSClientCert], data[config.EnvTLSClientKey])
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
