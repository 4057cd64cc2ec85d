package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// passwordGrace is the e2e manager's grace for a rotated password.
const passwordGrace = 30 * time.Second

// TestPasswordRotation: the backend's credentials rotate live while a
// backend that re-reads the connection Secret writes (SET + WAIT 1): first
// the backend password (the user's Secret), then the backend's password on
// the sentinels (the user's other Secret). In each, the old password keeps
// working until status.passwordRotation's retireAt and is refused
// everywhere afterwards. Throughout: no acknowledged write lost, no
// failover, Ready never lost; the number of failed writes is logged per
// rotation. (The internal credentials rotate in TestLeastPrivilege, on
// the other formation, so that the two run side by side.)
func TestPasswordRotation(t *testing.T) {
	t.Parallel()
	f := newFormation(t, "e2elp-rotate", formationOpts{password: strongPassword(t), sentinelPass: strongPassword(t)})
	start := time.Now()
	cur := waitReady(t, f, 3*time.Minute)
	t.Logf("apply -> Ready in %s", time.Since(start).Round(10*time.Millisecond))
	failovers := cur.Status.Failovers
	conds := recordConditions(t, f)
	from := time.Now()
	secrets := formationSecrets(t, f)
	w := startReloadingWriter(t, f, "rot:"+f.Name+":")
	time.Sleep(time.Second)
	w.Reset()

	steps := []struct {
		name string
		run  func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) []string
	}{
		{"backend password", func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) []string {
			return rotateBackendPassword(t, f, false)
		}},
		{"backend sentinel password", func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) []string {
			return rotateBackendPassword(t, f, true)
		}},
	}
	for _, step := range steps {
		stepStart := time.Now()
		ok := t.Run(step.name, func(t *testing.T) { secrets = append(secrets, step.run(t, f)...) })
		writerPhase(t, w, fmt.Sprintf("%s rotation (%s)", step.name, time.Since(stepStart).Round(time.Second)))
		if !ok {
			break
		}
	}

	finishWriter(t, f, w, nil)
	cur = get(t, f)
	if cur.Status.Failovers != failovers {
		t.Errorf("the rotations caused %d failovers (lastFailover %+v)", cur.Status.Failovers-failovers, cur.Status.LastFailover)
	}
	conds.assertStayedReady(t, from, "during the rotations")
	assertNoSecretInLogs(t, append(secrets, formationSecrets(t, f)...)...)
}

// rotateBackendPassword changes the backend user's password on the
// redis-servers (sentinel false: the user's password Secret) or on the
// sentinels (the user's sentinel Secret), and returns the passwords
// involved. Clients from the old and the new connection Secret keep working
// through the grace; after it the old password is refused everywhere.
func rotateBackendPassword(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, sentinel bool) []string {
	ctx := context.Background()
	cur := get(t, f)
	user, secretName, cred, where := backendUser(cur), cur.Spec.Auth.PasswordSecretRef.Name, acl.BackendPassword, "redis-server"
	if sentinel {
		secretName, cred, where = cur.Spec.Auth.SentinelPasswordSecretRef.Name, acl.BackendSentinelPassword, "sentinel"
	}
	// The password the connection Secret hands out for this plane.
	handedOut := func(data map[string][]byte) string {
		if sentinel {
			return string(data["REDIS_SENTINEL_PASSWORD"])
		}
		u, err := url.Parse(string(data["REDIS_URL"]))
		if err != nil {
			return ""
		}
		pw, _ := u.User.Password()
		return pw
	}
	oldPassword := secretValue(t, f.Namespace, secretName)
	oldData := connectionData(t, f)
	before := connectionClient(t, f)
	defer before.Close()

	newPassword := strongPassword(t)
	setSecretValue(t, f.Namespace, secretName, newPassword)
	rot := waitRotation(t, f, cred)
	eventually(t, time.Minute, "the connection Secret carries the new "+where+" password", func() (bool, string) {
		return handedOut(connectionData(t, f)) == newPassword, "old password still"
	})
	checkConnectionSecret(t, f, connectionData(t, f))
	after := connectionClient(t, f)
	defer after.Close()

	// Grace: both passwords everywhere; clients from the old and the new
	// Secret write (a fresh client from the old one also discovers the
	// master: it authenticates to a sentinel anew each time).
	cur = get(t, f)
	for _, pw := range []string{oldPassword, newPassword} {
		if ok, why := authEverywhere(cur, sentinel, user, pw, true); !ok {
			t.Fatalf("during the grace: %s", why)
		}
	}
	graceWrites(t, rot, map[string]*redis.Client{"old Secret": before, "new Secret": after}, oldData)

	eventually(t, time.Until(rot.RetireAt.Time)+time.Minute, "the old password refused by every "+where, func() (bool, string) {
		return authEverywhere(get(t, f), sentinel, user, oldPassword, false)
	})
	waitRotationDone(t, f)
	if ok, why := authEverywhere(get(t, f), sentinel, user, newPassword, true); !ok {
		t.Fatalf("after the grace: %s", why)
	}
	fresh := connectionClient(t, f)
	defer fresh.Close()
	if err := fresh.Set(ctx, "rot:after-"+where, "ok", 0).Err(); err != nil {
		t.Fatalf("a client from the new Secret fails after the grace: %v", err)
	}
	return []string{oldPassword, newPassword}
}

// rotateInternalCredentials deletes the Secret holding the operator's own
// users' passwords: every one of them is generated anew and rotated.
func rotateInternalCredentials(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) []string {
	ctx := context.Background()
	name := f.Name + "-internal-credentials"
	old := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: name}, old); err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	oldAdmin := adminCreds(t, f)
	users := map[acl.Credential]struct {
		user     string
		sentinel bool // the credential is used on sentinels (else on redis-servers)
	}{
		acl.Admin:       {acl.AdminUser, false},
		acl.Replication: {acl.ReplicationUser, false},
		acl.Monitoring:  {acl.MonitoringUser, false},
		acl.Peer:        {acl.PeerUser, true},
	}
	for _, c := range acl.Internal {
		if len(old.Data[string(c)]) == 0 {
			t.Fatalf("%s has no %q key", name, c)
		}
	}
	if string(old.Data[string(acl.Admin)]) != oldAdmin.Password {
		t.Fatalf("%s's admin password is not the one the members accept (password-state)", name)
	}

	if err := k8s.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	rot := waitRotation(t, f, acl.Internal...)
	fresh := &corev1.Secret{}
	eventually(t, time.Minute, name+" generated anew with four new passwords", func() (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: name}, fresh); err != nil {
			return false, err.Error()
		}
		for _, c := range acl.Internal {
			if v := fresh.Data[string(c)]; len(v) == 0 || string(v) == string(old.Data[string(c)]) {
				return false, fmt.Sprintf("%q not renewed", c)
			}
		}
		return true, ""
	})
	if !metav1.IsControlledBy(fresh, get(t, f)) {
		t.Errorf("%s is not owned by the formation: %+v", name, fresh.OwnerReferences)
	}
	if ok, why := authEverywhere(get(t, f), false, acl.AdminUser, oldAdmin.Password, true); !ok {
		t.Errorf("during the grace the old admin password is refused: %s", why)
	}

	// After the grace every old internal password is refused where it was
	// used, and the new admin password is the one the members accept.
	eventually(t, time.Until(rot.RetireAt.Time)+time.Minute, "every old internal password refused", func() (bool, string) {
		cur := get(t, f)
		for _, c := range acl.Internal {
			u := users[c]
			if ok, why := authEverywhere(cur, u.sentinel, u.user, string(old.Data[string(c)]), false); !ok {
				return false, string(c) + ": " + why
			}
		}
		return authEverywhere(cur, true, acl.AdminUser, oldAdmin.Password, false)
	})
	waitRotationDone(t, f)
	newAdmin := adminCreds(t, f)
	if newAdmin.Password != string(fresh.Data[string(acl.Admin)]) {
		t.Errorf("the password state's admin password is not the one in %s", name)
	}
	for _, sentinel := range []bool{false, true} {
		if ok, why := authEverywhere(get(t, f), sentinel, acl.AdminUser, newAdmin.Password, true); !ok {
			t.Fatalf("the new admin password: %s", why)
		}
	}

	// The links authenticated before the rotation still run on the old
	// passwords; cut them so that replication, Sentinel's monitoring and
	// the sentinels' links to each other prove the new ones.
	reconnectInternalLinks(t, f)
	eventually(t, time.Minute, "replication and Sentinel healthy on the new passwords", func() (bool, string) { return formationHealthy(t, f) })
	waitReady(t, f, time.Minute)

	var secrets []string
	for _, c := range acl.Internal {
		secrets = append(secrets, string(old.Data[string(c)]), string(fresh.Data[string(c)]))
	}
	return secrets
}

// reconnectInternalLinks kills the replicas' links to the master (one at a
// time, so the master keeps min-replicas-to-write), Sentinel's connections
// to every redis-server and the sentinels' links to each other, then waits
// until each is back under the same user, which can now only have
// authenticated with the new password.
func reconnectInternalLinks(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
	t.Helper()
	ctx := context.Background()
	cur := get(t, f)
	n := len(cur.Status.Members)
	master := adminRedis(t, cur, cur.Status.Master.Address)
	defer master.Close()
	for _, id := range clientIDs(t, master, acl.ReplicationUser) {
		if err := master.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
			t.Fatalf("CLIENT KILL ID %s (replication): %v", id, err)
		}
		eventually(t, time.Minute, "replicas reconnected with the new replication password", func() (bool, string) {
			got := clientIDs(t, master, acl.ReplicationUser)
			return len(got) == n-1 && !slices.Contains(got, id), fmt.Sprintf("%d replication links", len(got))
		})
	}
	for _, m := range cur.Status.Members {
		r := adminRedis(t, cur, m.Address)
		if err := r.Do(ctx, "CLIENT", "KILL", "USER", acl.MonitoringUser).Err(); err != nil {
			t.Fatalf("CLIENT KILL USER %s on %s: %v", acl.MonitoringUser, m.Name, err)
		}
		_ = r.Close()
		s := redisAs(m.Address, sentinelPort(cur), acl.AdminUser, adminCreds(t, cur).Password, nil)
		if err := s.Do(ctx, "CLIENT", "KILL", "USER", acl.PeerUser).Err(); err != nil {
			t.Fatalf("CLIENT KILL USER %s on sentinel %s: %v", acl.PeerUser, m.Name, err)
		}
		_ = s.Close()
	}
	eventually(t, time.Minute, "every sentinel reconnected to every redis-server and sentinel with the new passwords", func() (bool, string) {
		for _, m := range cur.Status.Members {
			r := adminRedis(t, cur, m.Address)
			monitoring := clientIDs(t, r, acl.MonitoringUser)
			_ = r.Close()
			// Each sentinel holds a command and a pub/sub link to each
			// redis-server.
			if len(monitoring) < 2*n {
				return false, fmt.Sprintf("%s: %d Sentinel links", m.Name, len(monitoring))
			}
			s := redisAs(m.Address, sentinelPort(cur), acl.AdminUser, adminCreds(t, cur).Password, nil)
			peers := clientIDs(t, s, acl.PeerUser)
			_ = s.Close()
			if len(peers) < n-1 {
				return false, fmt.Sprintf("sentinel %s: %d links from other sentinels", m.Name, len(peers))
			}
		}
		return true, ""
	})
}

// clientIDs are the ids of the connections authenticated as user.
func clientIDs(t *testing.T, c *redis.Client, user string) []string {
	t.Helper()
	list, err := c.Do(context.Background(), "CLIENT", "LIST").Text()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		fields := map[string]string{}
		for _, kv := range strings.Fields(line) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				fields[k] = v
			}
		}
		if fields["user"] == user {
			ids = append(ids, fields["id"])
		}
	}
	return ids
}

// graceWrites writes through each client, and through a client built
// afresh from oldData each time, until shortly before the rotation's
// retireAt: the old Secret must keep working through the grace.
func graceWrites(t *testing.T, rot *redisv1alpha1.PasswordRotationStatus, clients map[string]*redis.Client, oldData map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	deadline := rot.RetireAt.Add(-3 * time.Second)
	if limit := time.Now().Add(passwordGrace); deadline.After(limit) {
		deadline = limit
	}
	n := 0
	for ; time.Now().Before(deadline); n++ {
		for _, name := range slices.Sorted(maps.Keys(clients)) {
			if err := clients[name].Set(ctx, fmt.Sprint("rot:grace:", name, n), n, 0).Err(); err != nil {
				t.Fatalf("the client from the %s failed %s before retireAt: %v", name, time.Until(rot.RetireAt.Time).Round(time.Second), err)
			}
		}
		fresh, err := redisclient.FromSecretData(oldData, redisclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = fresh.Set(ctx, fmt.Sprint("rot:grace:fresh", n), n, 0).Err()
		_ = fresh.Close()
		if err != nil {
			t.Fatalf("a new client from the old Secret failed %s before retireAt: %v", time.Until(rot.RetireAt.Time).Round(time.Second), err)
		}
		time.Sleep(time.Second)
	}
	t.Logf("grace: %d rounds of writes with the old and the new Secret until %s before retireAt", n, time.Until(rot.RetireAt.Time).Round(time.Second))
}

// waitRotation waits until status.passwordRotation lists every credential
// and returns it.
func waitRotation(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, creds ...acl.Credential) *redisv1alpha1.PasswordRotationStatus {
	t.Helper()
	var rot *redisv1alpha1.PasswordRotationStatus
	eventually(t, time.Minute, fmt.Sprintf("status.passwordRotation lists %v", creds), func() (bool, string) {
		cur := get(t, f)
		rot = cur.Status.PasswordRotation
		if rot == nil {
			return false, fmt.Sprintf("no passwordRotation; phase %s, SecretsValid: %s", cur.Status.Phase, conditionMessage(cur, redisv1alpha1.ConditionSecretsValid))
		}
		for _, c := range creds {
			if !slices.Contains(rot.Credentials, string(c)) {
				return false, fmt.Sprintf("passwordRotation lists %v", rot.Credentials)
			}
		}
		return true, ""
	})
	if rot.StateSecretName != f.Name+"-password-state" {
		t.Errorf("passwordRotation.stateSecretName = %q", rot.StateSecretName)
	}
	if until := time.Until(rot.RetireAt.Time); until <= 0 || until > passwordGrace+5*time.Second {
		t.Errorf("passwordRotation.retireAt is %s from now, the grace is %s", until.Round(time.Second), passwordGrace)
	}
	return rot
}

// waitRotationDone waits until status.passwordRotation is gone and the
// password state keeps no previous passwords.
func waitRotationDone(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
	t.Helper()
	eventually(t, time.Minute, "the rotation finished (no status.passwordRotation, no previous passwords kept)", func() (bool, string) {
		cur := get(t, f)
		if cur.Status.PasswordRotation != nil {
			return false, fmt.Sprintf("passwordRotation %+v", cur.Status.PasswordRotation)
		}
		state := &corev1.Secret{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-password-state"}, state); err != nil {
			return false, err.Error()
		}
		for k, v := range state.Data {
			if strings.HasSuffix(k, ".previous") && len(v) > 0 {
				return false, "the password state still keeps " + k
			}
		}
		return true, ""
	})
}

// formationSecrets are every password of a formation now: the user's
// Secrets and the operator's own (internal credentials, password state).
func formationSecrets(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) []string {
	t.Helper()
	var out []string
	for _, name := range []string{f.Spec.Auth.PasswordSecretRef.Name, f.Spec.Auth.SentinelPasswordSecretRef.Name, f.Name + "-internal-credentials", f.Name + "-password-state"} {
		s := &corev1.Secret{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.Namespace, Name: name}, s); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			t.Fatal(err)
		}
		for _, v := range s.Data {
			if len(v) > 0 {
				out = append(out, string(v))
			}
		}
	}
	return out
}

func connectionClient(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) *redis.Client {
	t.Helper()
	c, err := harness.ConnectionClient(context.Background(), k8s, f, redisclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
