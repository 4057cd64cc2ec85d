package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/passwords"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// The users a test talks to members as. Since the default user is
// disabled, every client names its user: the backend user (the connection
// Secret's) for data, the operator's admin user for anything
// administrative (INFO, CONFIG, SENTINEL MASTER/SET, CKQUORUM, ACL...).

// adminCreds are the operator's admin user as the members accept it now.
func adminCreds(t testing.TB, f *redisv1alpha1.RedisSentinelFormation) redisadmin.Credentials {
	t.Helper()
	c, err := harness.AdminCredentials(context.Background(), k8s, f)
	if err != nil {
		t.Fatalf("admin credentials: %v", err)
	}
	return c
}

// redisAs is a client for one redis-server (or sentinel, by port) as user.
// It never retries, so a refusal is seen as it is.
func redisAs(address string, port int32, user, password string, tc *tls.Config) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: net.JoinHostPort(address, strconv.Itoa(int(port))), Username: user, Password: password, TLSConfig: tc,
		DisableIdentity: true, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, PoolSize: 2,
	})
}

func sentinelAs(address string, port int32, user, password string, tc *tls.Config) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{
		Addr: net.JoinHostPort(address, strconv.Itoa(int(port))), Username: user, Password: password, TLSConfig: tc,
		DisableIdentity: true, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, PoolSize: 2,
	})
}

func redisPort(f *redisv1alpha1.RedisSentinelFormation) int32 {
	if f.Spec.Redis.Port != 0 {
		return f.Spec.Redis.Port
	}
	return 6379
}

func sentinelPort(f *redisv1alpha1.RedisSentinelFormation) int32 {
	if f.Spec.Redis.SentinelPort != 0 {
		return f.Spec.Redis.SentinelPort
	}
	return 26379
}

func masterName(f *redisv1alpha1.RedisSentinelFormation) string {
	if f.Spec.MasterName != "" {
		return f.Spec.MasterName
	}
	return "mymaster"
}

// adminRedis is the admin user on a member's redis-server.
func adminRedis(t testing.TB, f *redisv1alpha1.RedisSentinelFormation, address string) *redis.Client {
	t.Helper()
	c := adminCreds(t, f)
	return redisAs(address, redisPort(f), c.Username, c.Password, c.TLS.Config())
}

// adminSentinel is the admin user on a member's sentinel.
func adminSentinel(t testing.TB, f *redisv1alpha1.RedisSentinelFormation, address string) *redis.SentinelClient {
	t.Helper()
	c := adminCreds(t, f)
	return sentinelAs(address, sentinelPort(f), c.Username, c.Password, c.TLS.Config())
}

// backendUser is the backend user's name as the spec says (default
// "backend").
func backendUser(f *redisv1alpha1.RedisSentinelFormation) string {
	if f.Spec.Auth.BackendUser.Name != "" {
		return f.Spec.Auth.BackendUser.Name
	}
	return acl.DefaultBackendUser
}

// backendRedis is the backend user on a member's redis-server with the
// password in the user's Secret.
func backendRedis(t testing.TB, f *redisv1alpha1.RedisSentinelFormation, address string) *redis.Client {
	t.Helper()
	return redisAs(address, redisPort(f), backendUser(f), secretValue(t, f.Namespace, f.Spec.Auth.PasswordSecretRef.Name), nil)
}

// connectionData is the formation's connection Secret.
func connectionData(t testing.TB, f *redisv1alpha1.RedisSentinelFormation) map[string][]byte {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-connection"}, s); err != nil {
		t.Fatalf("reading the connection Secret: %v", err)
	}
	return s.Data
}

// checkConnectionSecret checks the backend contract: REDIS_URL names the
// backend user with its password and the master set, REDIS_SENTINEL_USERNAME
// and REDIS_SENTINEL_PASSWORD are the backend's discovery user on the
// sentinels, REDIS_SENTINEL_ADDRS every sentinel.
func checkConnectionSecret(t testing.TB, f *redisv1alpha1.RedisSentinelFormation, data map[string][]byte) {
	t.Helper()
	cur := get(t, f)
	u, err := url.Parse(string(data["REDIS_URL"]))
	if err != nil {
		t.Fatalf("REDIS_URL does not parse") // never quote it: it holds a password
	}
	pw, _ := u.User.Password()
	// In Sentinel mode the host is not used: it names the master set, not
	// an address that changes on failover.
	wantHost := net.JoinHostPort(masterName(cur), strconv.Itoa(int(redisPort(cur))))
	scheme := "redis"
	if cur.Spec.TLS != nil && cur.Spec.TLS.Enabled {
		scheme = "rediss"
	}
	switch {
	case u.Scheme != scheme || u.User.Username() != backendUser(cur) || u.Path != "/0":
		t.Fatalf("REDIS_URL: scheme %q, user %q, path %q; want %s://%s:...@<master name>:<port>/0", u.Scheme, u.User.Username(), u.Path, scheme, backendUser(cur))
	case pw != secretValue(t, f.Namespace, cur.Spec.Auth.PasswordSecretRef.Name):
		t.Fatalf("REDIS_URL does not carry the backend password of Secret %s", cur.Spec.Auth.PasswordSecretRef.Name)
	case u.Host != wantHost:
		t.Fatalf("REDIS_URL names %s, want %s", u.Host, wantHost)
	case string(data["REDIS_SENTINEL_USERNAME"]) != backendUser(cur):
		t.Fatalf("REDIS_SENTINEL_USERNAME = %q, want %q", data["REDIS_SENTINEL_USERNAME"], backendUser(cur))
	case string(data["REDIS_SENTINEL_PASSWORD"]) != secretValue(t, f.Namespace, cur.Spec.Auth.SentinelPasswordSecretRef.Name):
		t.Fatalf("REDIS_SENTINEL_PASSWORD is not the backend's sentinel password of Secret %s", cur.Spec.Auth.SentinelPasswordSecretRef.Name)
	case string(data["REDIS_SENTINEL_MASTER_NAME"]) != masterName(cur):
		t.Fatalf("REDIS_SENTINEL_MASTER_NAME = %q", data["REDIS_SENTINEL_MASTER_NAME"])
	case len(strings.Split(string(data["REDIS_SENTINEL_ADDRS"]), ",")) != int(cur.Spec.Members):
		t.Fatalf("REDIS_SENTINEL_ADDRS = %q, want %d sentinels", data["REDIS_SENTINEL_ADDRS"], cur.Spec.Members)
	}
}

// strongPassword passes the production policy.
func strongPassword(t testing.TB) string {
	t.Helper()
	p, err := passwords.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// setSecretValue replaces the "password" key of a user Secret.
func setSecretValue(t testing.TB, ns, name, value string) {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	s.Data["password"] = []byte(value)
	if err := k8s.Update(context.Background(), s); err != nil {
		t.Fatalf("updating Secret %s: %v", name, err)
	}
}

// isRefused says whether err is an ACL refusal (NOPERM).
func isRefused(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOPERM")
}

// isWrongPass says whether err is an authentication refusal.
func isWrongPass(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), "invalid username-password"))
}

// authEverywhere checks that every member's redis-server (or sentinel,
// sentinel true) accepts user/password (accepted true) or refuses it.
func authEverywhere(f *redisv1alpha1.RedisSentinelFormation, sentinel bool, user, password string, accepted bool) (bool, string) {
	port := redisPort(f)
	if sentinel {
		port = sentinelPort(f)
	}
	for _, m := range f.Status.Members {
		c := redisAs(m.Address, port, user, password, nil)
		err := c.Ping(context.Background()).Err()
		_ = c.Close()
		switch {
		case accepted && err != nil:
			return false, fmt.Sprintf("%s:%d refuses user %s: %v", m.Name, port, user, err)
		case !accepted && !isWrongPass(err):
			return false, fmt.Sprintf("%s:%d still answers user %s with %v", m.Name, port, user, err)
		}
	}
	return true, ""
}

// formationHealthy checks through the admin user what Ready promises:
// every replica linked to the master, every sentinel names the master,
// counts its peers and replicas and reports CKQUORUM OK.
func formationHealthy(t testing.TB, f *redisv1alpha1.RedisSentinelFormation) (bool, string) {
	t.Helper()
	ctx := context.Background()
	cur := get(t, f)
	if cur.Status.Master == nil {
		return false, "no master in status"
	}
	n := len(cur.Status.Members)
	for _, m := range cur.Status.Members {
		r := adminRedis(t, cur, m.Address)
		info, err := r.InfoMap(ctx, "replication").Result()
		_ = r.Close()
		if err != nil {
			return false, fmt.Sprintf("INFO replication on %s: %v", m.Name, err)
		}
		repl := info["Replication"]
		if m.Address == cur.Status.Master.Address {
			if repl["role"] != "master" || repl["connected_slaves"] != strconv.Itoa(n-1) {
				return false, fmt.Sprintf("master %s: role %s, %s replicas connected", m.Name, repl["role"], repl["connected_slaves"])
			}
		} else if repl["role"] != "slave" || repl["master_host"] != cur.Status.Master.Address || repl["master_link_status"] != "up" {
			return false, fmt.Sprintf("replica %s: role %s, master %s, link %s", m.Name, repl["role"], repl["master_host"], repl["master_link_status"])
		}
		s := adminSentinel(t, cur, m.Address)
		addr, aerr := s.GetMasterAddrByName(ctx, masterName(cur)).Result()
		master, merr := s.Master(ctx, masterName(cur)).Result()
		quorum, qerr := s.CkQuorum(ctx, masterName(cur)).Result()
		_ = s.Close()
		switch {
		case aerr != nil || merr != nil || qerr != nil:
			return false, fmt.Sprintf("sentinel %s: %v %v %v", m.Name, aerr, merr, qerr)
		case len(addr) == 0 || addr[0] != cur.Status.Master.Address:
			return false, fmt.Sprintf("sentinel %s names %v, status %s", m.Name, addr, cur.Status.Master.Address)
		case master["num-slaves"] != strconv.Itoa(n-1) || master["num-other-sentinels"] != strconv.Itoa(n-1):
			return false, fmt.Sprintf("sentinel %s counts %s replicas and %s other sentinels", m.Name, master["num-slaves"], master["num-other-sentinels"])
		case strings.Contains(master["flags"], "down"):
			return false, fmt.Sprintf("sentinel %s flags the master %s", m.Name, master["flags"])
		case !strings.HasPrefix(quorum, "OK"):
			return false, fmt.Sprintf("sentinel %s CKQUORUM: %s", m.Name, quorum)
		}
	}
	return true, ""
}

// seenCondition is one state of a condition the watch saw.
type seenCondition struct {
	At                            time.Time
	Type, Status, Reason, Message string
}

// conditionLog records every condition state a formation goes through,
// from a watch, so that short-lived ones (a Degraded repaired on the next
// pass) are not missed by polling.
type conditionLog struct {
	mu   sync.Mutex
	seen []seenCondition
	last map[string]seenCondition
}

// recordConditions watches f until the test ends.
func recordConditions(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) *conditionLog {
	t.Helper()
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	l := &conditionLog{last: map[string]seenCondition{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	started := make(chan struct{})
	go func() {
		defer close(done)
		once := sync.Once{}
		for ctx.Err() == nil {
			w, err := wc.Watch(ctx, &redisv1alpha1.RedisSentinelFormationList{}, client.InNamespace(f.Namespace),
				client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", f.Name)})
			once.Do(func() { close(started) })
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				if cur, ok := ev.Object.(*redisv1alpha1.RedisSentinelFormation); ok {
					l.observe(cur)
				}
			}
			w.Stop()
		}
	}()
	<-started
	l.observe(get(t, f))
	return l
}

func (l *conditionLog) observe(f *redisv1alpha1.RedisSentinelFormation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range f.Status.Conditions {
		s := seenCondition{At: time.Now(), Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message}
		if prev, ok := l.last[c.Type]; ok && prev.Status == s.Status && prev.Reason == s.Reason && prev.Message == s.Message {
			continue
		}
		l.last[c.Type] = s
		l.seen = append(l.seen, s)
	}
}

// since returns the states seen from a time on.
func (l *conditionLog) since(from time.Time) []seenCondition {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []seenCondition
	for _, s := range l.seen {
		if !s.At.Before(from) {
			out = append(out, s)
		}
	}
	return out
}

// find returns the first state since from that match says yes to.
func (l *conditionLog) find(from time.Time, match func(seenCondition) bool) (seenCondition, bool) {
	for _, s := range l.since(from) {
		if match(s) {
			return s, true
		}
	}
	return seenCondition{}, false
}

func (l *conditionLog) describe(from time.Time) string {
	var b strings.Builder
	for _, s := range l.since(from) {
		fmt.Fprintf(&b, "  %s %s=%s %s: %s\n", s.At.Format("15:04:05.000"), s.Type, s.Status, s.Reason, s.Message)
	}
	return b.String()
}

// notReadySince fails t when Ready was seen False since from.
func (l *conditionLog) assertStayedReady(t testing.TB, from time.Time, what string) {
	t.Helper()
	if s, lost := l.find(from, func(s seenCondition) bool {
		return s.Type == redisv1alpha1.ConditionReady && s.Status != "True"
	}); lost {
		t.Errorf("%s: Ready went %s (%s: %s); conditions seen:\n%s", what, s.Status, s.Reason, s.Message, l.describe(from))
	}
}

// events are the formation's Events with the given reason.
func events(t testing.TB, f *redisv1alpha1.RedisSentinelFormation, reason string) []corev1.Event {
	t.Helper()
	var out []corev1.Event
	for _, e := range allEvents(t, f) {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// allEvents are the formation's Events.
func allEvents(t testing.TB, f *redisv1alpha1.RedisSentinelFormation) []corev1.Event {
	t.Helper()
	var list corev1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(f.Namespace)); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Name == f.Name {
			out = append(out, e)
		}
	}
	return out
}

// secretForms are the ways a password could leak into a log: as is,
// base64 (a Secret's data printed) and URL-encoded (a REDIS_URL printed).
func secretForms(s string) []string {
	forms := []string{s, base64.StdEncoding.EncodeToString([]byte(s)), url.QueryEscape(s), url.PathEscape(s)}
	slices.Sort(forms)
	return slices.Compact(forms)
}
