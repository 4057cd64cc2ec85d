//go:build linux

package render

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/certs"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// TestRealTLS: the TLS directives the renderer writes for each engine (key
// and certificate chain in one file, the CA file, TLS replication, client
// certificates required) are accepted by real servers and a sentinel: the
// replica links to its master over TLS, the sentinel reaches both with its
// certificate, and CONFIG SET of TLS.Reload's settings serves a renewed
// certificate to new connections.
func TestRealTLS(t *testing.T) { testredis.ForEach(t, testRealTLS) }

func testRealTLS(t *testing.T, e engine.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	creds := realCreds()
	backend := acl.Backend{Name: acl.DefaultBackendUser, Rules: acl.DefaultBackendRules}
	adminPw := creds[acl.Admin].Current
	ca := testenv.NewCA(t, "rsf-test-ca", time.Now())
	issue := func() (certPEM, keyPEM []byte) {
		return ca.Serving(t, []string{"127.0.0.1"}, time.Now(), 24*time.Hour)
	}
	certPEM, keyPEM := issue()
	// The operator dials with a client certificate (tls-auth-clients yes).
	clientTLS, err := certs.ClientConfig(ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// files writes the member's TLS files where localize points them.
	files := func(dir string, certPEM, keyPEM []byte) {
		t.Helper()
		for name, b := range map[string][]byte{"tls-ca.crt": ca.CertPEM, "tls-member.pem": certs.CombinedPEM(certPEM, keyPEM)} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	tlsConf := &TLS{CAFile: e.TLSCAFile, MemberFile: e.TLSMemberFile, AuthClients: true}
	admin := func(port int) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Username: acl.AdminUser, Password: adminPw,
			TLSConfig: clientTLS, DisableIdentity: true, MaxRetries: -1, DialTimeout: 2 * time.Second})
	}
	spec := testredis.Spec{Engine: e.Name, Username: acl.AdminUser, Password: adminPw, TLS: clientTLS}

	masterPort, replicaPort := freePort(t), freePort(t)
	var dirs []string
	for _, r := range []Redis{
		{Port: masterPort},
		{Port: replicaPort, ReplicaOf: &endpoint.Endpoint{Host: "127.0.0.1", Port: masterPort}},
	} {
		r.Address, r.Users, r.Engine, r.TLS = "127.0.0.1", acl.ServerUsers(creds, backend), e, tlsConf
		r.MasterUser, r.MasterAuth = acl.ReplicationUser, creds[acl.Replication].Current
		r.Maxmemory, r.MaxmemoryPolicy, r.AppendFsync = "16mb", "noeviction", "everysec"
		conf, err := RedisConf(r)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		files(dir, certPEM, keyPEM)
		startLocal(t, dir, r.Port, conf, spec)
		dirs = append(dirs, dir)
	}
	mc, rc := admin(masterPort), admin(replicaPort)
	defer mc.Close()
	defer rc.Close()
	eventually(t, 20*time.Second, "replica linked over TLS", func() error {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil || infoField(info, "master_link_status") != "up" {
			return fmt.Errorf("%v\n%s", err, info)
		}
		return nil
	})

	sentinelPort := freePort(t)
	sconf, err := SentinelConf(Sentinel{
		Address: "127.0.0.1", Port: sentinelPort, Users: acl.SentinelUsers(creds, backend, e),
		PeerUser: acl.PeerUser, PeerPassword: creds[acl.Peer].Current,
		MasterName: "tls-master", Master: endpoint.Endpoint{Host: "127.0.0.1", Port: masterPort}, Quorum: 1,
		DownAfterMs: 5000, FailoverTimeoutMs: 10000, ParallelSyncs: 1,
		AuthUser: acl.MonitoringUser, AuthPass: creds[acl.Monitoring].Current,
		KnownReplicas: []endpoint.Endpoint{{Host: "127.0.0.1", Port: replicaPort}},
		TLS:           tlsConf, Engine: e,
	})
	if err != nil {
		t.Fatal(err)
	}
	sdir := t.TempDir()
	files(sdir, certPEM, keyPEM)
	s := spec
	s.Sentinel = true
	startLocal(t, sdir, sentinelPort, sconf, s)
	sc := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(sentinelPort)), Username: acl.AdminUser, Password: adminPw,
		TLSConfig: clientTLS, DisableIdentity: true, MaxRetries: -1})
	defer sc.Close()
	eventually(t, 20*time.Second, "the sentinel reaches master and replica over TLS", func() error {
		m, err := sc.Master(ctx, "tls-master").Result()
		if err != nil || m["flags"] != "master" || m["runid"] == "" || m["num-slaves"] != "1" {
			return fmt.Errorf("%v %v", m, err)
		}
		reps, err := sc.Replicas(ctx, "tls-master").Result()
		if err != nil || len(reps) != 1 || reps[0]["flags"] != "slave" || reps[0]["master-link-status"] != "ok" {
			return fmt.Errorf("%v %v", reps, err)
		}
		return nil
	})

	// A renewal: new files at the same paths, then CONFIG SET of
	// TLS.Reload's settings (at the files' local paths) makes the master
	// serve the new certificate to new connections.
	renewedCert, renewedKey := issue()
	files(dirs[0], renewedCert, renewedKey)
	local := map[string]string{e.TLSMemberFile: filepath.Join(dirs[0], "tls-member.pem"), e.TLSCAFile: filepath.Join(dirs[0], "tls-ca.crt")}
	for k, v := range tlsConf.Reload() {
		if err := mc.ConfigSet(ctx, k, local[v]).Err(); err != nil {
			t.Fatalf("CONFIG SET %s: %v", k, err)
		}
	}
	want, err := certs.Leaf(renewedCert)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(masterPort)), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	served := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if !served.Equal(want) {
		t.Fatalf("after CONFIG SET the master serves the certificate of serial %s, want the renewed %s", served.SerialNumber, want.SerialNumber)
	}
}
