package chaos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// Bounds. They are invariants, not benchmarks: the machine is small and
// shared, so they are generous.
const (
	readyBound    = 3 * time.Minute // fault removed (or injected, if the operator removes it) -> Ready
	bringUpBound  = 5 * time.Minute // a new formation -> Ready
	failoverBound = time.Minute     // master lost -> Sentinel names another
	settleBound   = 30 * time.Second
	redisPort     = 6379
	sentinelPort  = 26379
	masterName    = "mymaster"
)

// ---------------------------------------------------------------- formations

// formation is a formation of the suite with its backend user's
// passwords (the user's Secrets); the operator's own passwords are read
// from the Secrets it owns when needed (adminCreds).
type formation struct {
	key client.ObjectKey
	// backendUser is the ACL user of the connection Secret.
	backendUser      string
	password         string
	sentinelPassword string
	uid              string
}

func (f *formation) name() string { return f.key.Name }

// object is the formation's identity as a resource, for the harness.
func (f *formation) object() *redisv1alpha1.RedisSentinelFormation {
	return &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{Namespace: f.key.Namespace, Name: f.key.Name}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newPassword is a random password that passes the production policy and
// holds characters that URL encoding changes ('/', '+', '@', '%', ':'), so
// that the leak scan's URL-encoded forms differ from the plain one.
func newPassword(kind string) string {
	return "chaos-" + kind + "/" + randomHex(8) + "+" + randomHex(8) + "@%:"
}

// newFormation creates a namespace, the password Secrets (random
// passwords, registered with the leak watch first) and a formation named
// chaos-<random>, in the default (production) environment.
func newFormation(t *testing.T) *formation {
	t.Helper()
	return newFormationNamed(t, "chaos-"+randomHex(2))
}

// newFormationNamed is newFormation with the formation's (and its
// namespace's) name. Every value the formation's own credential Secrets
// ever hold is registered with the leak watch.
func newFormationNamed(t *testing.T, name string) *formation {
	t.Helper()
	ctx := context.Background()
	f := &formation{key: client.ObjectKey{Namespace: name, Name: name}, backendUser: acl.DefaultBackendUser,
		password: newPassword("pw"), sentinelPassword: newPassword("spw")}
	leaks.addSecret(f.password)
	leaks.addSecret(f.sentinelPassword)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	watchOwnedSecrets(t, f)
	for secret, value := range map[string]string{"redis-pw": f.password, "sentinel-pw": f.sentinelPassword} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: name}, StringData: map[string]string{"password": value}}
		if err := k8s.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	obj := &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: name}}
	obj.Spec.Auth.PasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "redis-pw", Key: "password"}
	obj.Spec.Auth.SentinelPasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "sentinel-pw", Key: "password"}
	obj.Spec.Engine = redisv1alpha1.Engine(suiteEngine.Name)
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("creating formation: %v", err)
	}
	f.uid = string(obj.UID)
	return f
}

// ownedCredentialSecrets are the formation's own Secrets that hold
// passwords: the operator's users' and the record of what members accept.
func ownedCredentialSecrets(f *formation) []string {
	return []string{f.name() + "-internal-credentials", f.name() + "-password-state"}
}

// watchOwnedSecrets registers with the leak watch every value the
// formation's own credential Secrets hold, as long as the test runs:
// every internal password ever generated, old and new.
func watchOwnedSecrets(t *testing.T, f *formation) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	names := ownedCredentialSecrets(f)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w, err := k8s.Watch(ctx, &corev1.SecretList{}, client.InNamespace(f.key.Namespace))
			if err != nil {
				time.Sleep(time.Second) // the API server may be restarting (drill 5b)
				continue
			}
			for ev := range w.ResultChan() {
				if s, ok := ev.Object.(*corev1.Secret); ok && slices.Contains(names, s.Name) {
					registerSecretValues(s)
				}
			}
			w.Stop()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		// The last versions, in case the watch missed one.
		for _, name := range names {
			s := &corev1.Secret{}
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: name}, s); err == nil {
				registerSecretValues(s)
			}
		}
	})
}

func registerSecretValues(s *corev1.Secret) {
	for _, v := range s.Data {
		leaks.addSecret(string(v))
	}
}

// adminCreds are the operator's admin user and the password every member
// accepts now (the password state Secret's current one).
func adminCreds(f *formation) (redisadmin.Credentials, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := harness.AdminCredentials(ctx, k8s, f.object())
	if err != nil {
		return c, err
	}
	leaks.addSecret(c.Password)
	return c, nil
}

// adminProvider hands go-redis the admin credentials as they are when it
// dials: a rotation of the internal credentials changes them.
func adminProvider(f *formation) func(context.Context) (string, string, error) {
	return func(context.Context) (string, string, error) {
		c, err := adminCreds(f)
		return c.Username, c.Password, err
	}
}

// deleteFormation deletes the resource and waits until the finalizer has
// removed its instances.
func deleteFormation(t *testing.T, f *formation) {
	t.Helper()
	ctx := context.Background()
	if obj, err := getFormation(f); err == nil {
		leaks.checkJSON("status of "+f.name(), obj.Status)
	}
	obj := &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{Name: f.key.Name, Namespace: f.key.Namespace}}
	if err := k8s.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting formation %s: %v", f.name(), err)
		return
	}
	eventually(t, 3*time.Minute, "formation "+f.name()+" and its instances deleted", func() (bool, string) {
		if err := k8s.Get(ctx, f.key, &redisv1alpha1.RedisSentinelFormation{}); err == nil {
			return false, "resource still present"
		}
		owned, err := incusSrv.ListInstances(ctx, "user.rsf.formation-uid", f.uid)
		if err != nil || len(owned) > 0 {
			return false, fmt.Sprintf("%d instances left (%v)", len(owned), err)
		}
		return true, ""
	})
}

// getFormation reads the formation from the API server; every status read
// is checked for passwords on the way.
func getFormation(f *formation) (*redisv1alpha1.RedisSentinelFormation, error) {
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if err := k8s.Get(context.Background(), f.key, cur); err != nil {
		return nil, err
	}
	leaks.checkJSON("status of "+f.name(), cur.Status)
	return cur, nil
}

func get(t *testing.T, f *formation) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	var cur *redisv1alpha1.RedisSentinelFormation
	eventually(t, time.Minute, "reading formation "+f.name(), func() (bool, string) {
		var err error
		cur, err = getFormation(f)
		return err == nil, fmt.Sprint(err)
	})
	return cur
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	eventuallyOr(t, timeout, what, cond, nil)
}

// eventuallyOr is eventually with more to say on a timeout; the operator's
// latest log lines are always added.
func eventuallyOr(t *testing.T, timeout time.Duration, what string, cond func() (bool, string), diagnose func() string) {
	t.Helper()
	harness.Eventually(t, timeout, what, cond, func() string {
		more := ""
		if diagnose != nil {
			more = diagnose() + "\n"
		}
		return more + "operator log tail:\n" + op.tail(25)
	})
}

// diagnose describes the formation's instances: state, address and the
// tail of each one's console log.
func diagnose(f *formation) string {
	var b strings.Builder
	n := 3
	if cur, err := getFormation(f); err == nil && cur.Spec.Members > 0 {
		n = int(cur.Spec.Members)
	}
	for i := 1; i <= n; i++ {
		name := controllers.InstanceName(f.key.Namespace, f.name(), i)
		inst, err := incusSrv.GetInstance(context.Background(), name)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", name, err)
			continue
		}
		fmt.Fprintf(&b, "%s: %s %q\n", name, inst.Status, inst.IPv4)
		if inst.IPv4 != "" {
			s := adminSentinel(f, inst.IPv4, time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			m, err := s.Master(ctx, masterName).Result()
			var peers, reps []string
			if ss, err := s.Sentinels(ctx, masterName).Result(); err == nil {
				for _, x := range ss {
					peers = append(peers, x["ip"])
				}
			}
			if rs, err := s.Replicas(ctx, masterName).Result(); err == nil {
				for _, x := range rs {
					reps = append(reps, x["ip"]+" "+x["flags"])
				}
			}
			cancel()
			_ = s.Close()
			fmt.Fprintf(&b, "  sentinel: master %s:%s epoch %s flags %s, %s replicas %v, %s other sentinels %v (err %v)\n",
				m["ip"], m["port"], m["config-epoch"], m["flags"], m["num-slaves"], reps, m["num-other-sentinels"], peers, err)
		}
		out, _ := exec.Command("incus", "console", name, "--show-log").CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		fmt.Fprintf(&b, "  console: %s\n", strings.Join(lines[max(0, len(lines)-8):], "\n  console: "))
	}
	return b.String()
}

func condition(f *redisv1alpha1.RedisSentinelFormation, typ string) *metav1.Condition {
	return meta.FindStatusCondition(f.Status.Conditions, typ)
}

func describeConditions(f *redisv1alpha1.RedisSentinelFormation) string {
	var parts []string
	for _, c := range f.Status.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
	}
	return fmt.Sprintf("phase %s, %s", f.Status.Phase, strings.Join(parts, " "))
}

// waitCondition waits for a condition with the given status (and reason,
// if not empty).
func waitCondition(t *testing.T, f *formation, timeout time.Duration, typ string, status metav1.ConditionStatus, reasons ...string) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	var cur *redisv1alpha1.RedisSentinelFormation
	eventually(t, timeout, fmt.Sprintf("%s %s=%s %v", f.name(), typ, status, reasons), func() (bool, string) {
		var err error
		if cur, err = getFormation(f); err != nil {
			return false, err.Error()
		}
		c := condition(cur, typ)
		if c == nil {
			return false, describeConditions(cur)
		}
		return c.Status == status && (len(reasons) == 0 || slices.Contains(reasons, c.Reason)), describeConditions(cur) + ": " + c.Message
	})
	return cur
}

// waitReadyAfter waits until the formation is Ready and became Ready at or
// after since (so a stale Ready from before a fault does not count), with
// its spec generation observed.
func waitReadyAfter(t *testing.T, f *formation, since time.Time, timeout time.Duration) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	var cur *redisv1alpha1.RedisSentinelFormation
	floor := since.Truncate(time.Second)
	eventuallyOr(t, timeout, f.name()+" Ready again", func() (bool, string) {
		var err error
		if cur, err = getFormation(f); err != nil {
			return false, err.Error()
		}
		c := condition(cur, redisv1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue {
			return false, describeConditions(cur)
		}
		if c.LastTransitionTime.Time.Before(floor) {
			return false, "Ready since " + c.LastTransitionTime.String() + ", before the fault: not noticed yet"
		}
		if cur.Status.ObservedGeneration != cur.Generation {
			return false, fmt.Sprintf("observedGeneration %d of %d", cur.Status.ObservedGeneration, cur.Generation)
		}
		return true, ""
	}, func() string { return diagnose(f) })
	return cur
}

// waitReady waits for Ready, whenever it became so.
func waitReady(t *testing.T, f *formation, timeout time.Duration) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	return waitReadyAfter(t, f, time.Time{}, timeout)
}

func memberNamed(f *redisv1alpha1.RedisSentinelFormation, name string) redisv1alpha1.MemberStatus {
	for _, m := range f.Status.Members {
		if m.Name == name {
			return m
		}
	}
	return redisv1alpha1.MemberStatus{}
}

// replicas are the members status does not name as master.
func replicas(f *redisv1alpha1.RedisSentinelFormation) []redisv1alpha1.MemberStatus {
	var out []redisv1alpha1.MemberStatus
	for _, m := range f.Status.Members {
		if f.Status.Master == nil || m.Name != f.Status.Master.Member {
			out = append(out, m)
		}
	}
	return out
}

// ---------------------------------------------------------------- redis

// directOptions are the options of a direct client to one member's
// redis-server (port 6379) or sentinel (26379): no retries, short timeouts.
func directOptions(address string, port int) *redis.Options {
	return &redis.Options{
		Addr:        net.JoinHostPort(address, fmt.Sprint(port)),
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, DisableIdentity: true, ContextTimeoutEnabled: true, PoolSize: 2,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// redisAt is a direct client to one member's redis-server or sentinel as
// the given user.
func redisAt(address string, port int, user, password string) *redis.Client {
	o := directOptions(address, port)
	o.Username, o.Password = user, password
	return redis.NewClient(o)
}

// redisAtAuth is redisAt with the user and password asked for on every
// new connection.
func redisAtAuth(address string, port int, creds func() (string, string)) *redis.Client {
	o := directOptions(address, port)
	o.CredentialsProvider = creds
	return redis.NewClient(o)
}

// adminAt is a direct client to one member's redis-server or sentinel as
// the operator's admin user (for INFO, CONFIG, CLIENT, SENTINEL MASTER...,
// which the backend user may not run).
func adminAt(f *formation, address string, port int) *redis.Client {
	o := directOptions(address, port)
	o.CredentialsProviderContext = adminProvider(f)
	return redis.NewClient(o)
}

// adminSentinel is adminAt for a sentinel, as a SentinelClient.
func adminSentinel(f *formation, address string, timeout time.Duration) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(address, fmt.Sprint(sentinelPort)),
		CredentialsProviderContext: adminProvider(f),
		DialTimeout:                timeout, ReadTimeout: timeout, MaxRetries: -1, DisableIdentity: true})
}

// info reads one INFO section of a member's redis-server (as admin).
func info(f *formation, address, section string) (map[string]string, error) {
	c := adminAt(f, address, redisPort)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m, err := c.InfoMap(ctx, section).Result()
	if err != nil {
		leaks.sawError("INFO "+section, err)
		return nil, err
	}
	for k, v := range m {
		if strings.EqualFold(k, section) {
			return v, nil
		}
	}
	return nil, fmt.Errorf("INFO %s: no such section in %v", section, m)
}

// sentinelMaster asks a member's sentinel for the master's address (as
// admin: what the sentinel believes, whatever backends may ask).
func sentinelMaster(f *formation, address string) (string, error) {
	c := adminSentinel(f, address, time.Second)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addr, err := c.GetMasterAddrByName(ctx, masterName).Result()
	if err != nil {
		leaks.sawError("SENTINEL GET-MASTER-ADDR-BY-NAME", err)
		return "", err
	}
	if len(addr) != 2 {
		return "", fmt.Errorf("unexpected answer %v", addr)
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}

func connectionClient(t *testing.T, f *formation, opts redisclient.Options) *redis.Client {
	t.Helper()
	conn := &corev1.Secret{}
	eventually(t, time.Minute, "the connection Secret of "+f.name(), func() (bool, string) {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: f.name() + "-connection"}, conn)
		return err == nil, fmt.Sprint(err)
	})
	c, err := redisclient.FromSecretData(conn.Data, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ---------------------------------------------------------------- writer

// writer is the drill's harness.Writer (SET + WAIT 1 through the
// connection Secret's client), whose counts go into the drill's result.
type writer struct {
	*harness.Writer
	f        *formation
	finished bool
	result   writeResult
}

type writeResult struct{ attempted, acked, lost int }

var (
	writersMu sync.Mutex
	// writers are all writers of the run, for the final check.
	writers []*writer
)

// startWriter starts the drill's writer; its counts go to r when the
// drill finishes it, or at the drill's end if it failed before.
func startWriter(t *testing.T, f *formation, drill string, r *result) *writer {
	t.Helper()
	hw, err := harness.StartWriter(context.Background(), k8s, f.object(), harness.WriterOptions{
		Prefix:  "chaos:" + drill + ":",
		OnError: func(err error) { leaks.sawError("writer", err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{Writer: hw, f: f}
	writersMu.Lock()
	writers = append(writers, w)
	writersMu.Unlock()
	// Don't stop without waiting: a leaked writer would write into the
	// next drill. A drill that failed before finishing the writer still
	// gets its acknowledged writes checked.
	t.Cleanup(func() {
		if !w.finished {
			w.finish(t)
		}
		r.writes = w.result
	})
	return w
}

// finish stops the writer and reads every acknowledged key back through a
// fresh client: none may be lost.
func (w *writer) finish(t *testing.T) writeResult {
	t.Helper()
	st := w.Stop()
	w.finished = true
	lost := verifyKeys(t, w.f, w.Acknowledged())
	w.result = writeResult{attempted: st.Attempted, acked: st.Acknowledged, lost: len(lost)}
	t.Logf("writes: %d attempted, %d ok, %d acknowledged (WAIT 1), %d lost; longest gap without a successful write %s",
		st.Attempted, st.OK, st.Acknowledged, len(lost), st.LongestGap.Round(time.Millisecond))
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged writes lost, e.g. %v", len(lost), st.Acknowledged, lost[:min(5, len(lost))])
	}
	return w.result
}

// verifyKeys returns the keys (whose value is the key) that the formation
// no longer serves.
func verifyKeys(t *testing.T, f *formation, keys []string) []string {
	t.Helper()
	lost, err := harness.LostKeys(context.Background(), k8s, f.object(), keys, func(err error) { leaks.sawError("verify", err) })
	if err != nil {
		t.Fatal(err)
	}
	return lost
}

// ---------------------------------------------------------------- write probes

// probes write directly to every member's redis-server (SET, no WAIT) in a
// loop and record when each accepted a write, to prove that no two members
// accepted writes during overlapping periods.
type probes struct {
	mu      sync.Mutex
	ok      map[string][]span // member -> accepted writes
	errs    map[string]map[string]time.Time
	watched map[string]bool
	stop    chan struct{}
	wg      sync.WaitGroup
	closed  bool
}

type span struct{ start, end time.Time }

func startProbes(t *testing.T, f *formation, members []redisv1alpha1.MemberStatus) *probes {
	t.Helper()
	p := newProbes(t)
	user, password := f.backendUser, f.password
	for _, m := range members {
		p.watch(m.Name, m.Address, func() (string, string) { return user, password })
	}
	return p
}

// newProbes returns probes of no member yet; watch adds members (e.g. as a
// bring-up or a scale-up creates them).
func newProbes(t *testing.T) *probes {
	t.Helper()
	p := &probes{ok: map[string][]span{}, errs: map[string]map[string]time.Time{}, watched: map[string]bool{}, stop: make(chan struct{})}
	t.Cleanup(p.halt)
	return p
}

// watch starts probing a member's redis-server as the backend user; its
// user and password are asked for on every new connection (a rotation
// drill switches them). A member probed already, or probes halted, start
// nothing.
func (p *probes) watch(member, address string, creds func() (string, string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.watched[member] {
		return
	}
	p.watched[member] = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c := redisAtAuth(address, redisPort, creds)
		defer c.Close()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			start := time.Now()
			err := c.Set(ctx, fmt.Sprintf("chaos:probe:%s:%d", member, i), "x", time.Hour).Err()
			end := time.Now()
			cancel()
			p.mu.Lock()
			if err == nil {
				p.ok[member] = append(p.ok[member], span{start, end})
			} else {
				leaks.sawError("probe", err)
				kind := errKind(err)
				if p.errs[member] == nil {
					p.errs[member] = map[string]time.Time{}
				}
				if _, seen := p.errs[member][kind]; !seen {
					p.errs[member][kind] = start
				}
			}
			p.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

// errKind is the first word of a Redis error (NOREPLICAS, READONLY...) or
// "network".
func errKind(err error) string {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		if f := strings.Fields(rerr.Error()); len(f) > 0 {
			return f[0]
		}
	}
	return "network"
}

func (p *probes) halt() {
	p.mu.Lock()
	closed := p.closed
	p.closed = true
	p.mu.Unlock()
	if !closed {
		close(p.stop)
	}
	p.wg.Wait()
}

// window is when a member accepted writes: its first accepted write's start
// and its last one's end.
func (p *probes) window(member string) (span, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.ok[member]
	if len(s) == 0 {
		return span{}, false
	}
	return span{s[0].start, s[len(s)-1].end}, true
}

// acceptedAfter is the first write the member accepted that started after t.
func (p *probes) acceptedAfter(member string, t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.ok[member] {
		if s.start.After(t) {
			return s.start, true
		}
	}
	return time.Time{}, false
}

// lastAccepted is the end of the member's last accepted write.
func (p *probes) lastAccepted(member string) (time.Time, bool) {
	w, ok := p.window(member)
	return w.end, ok
}

// firstError is when the member first refused a write with the given
// error kind (NOREPLICAS, READONLY, network...).
func (p *probes) firstError(member, kind string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.errs[member][kind]
	return at, ok
}

// checkOneWriter stops the probes and fails when two members accepted
// writes in overlapping periods (two masters at the same time). It returns
// a description of who accepted writes when.
func (p *probes) checkOneWriter(t *testing.T, origin time.Time) string {
	t.Helper()
	p.halt()
	type win struct {
		member string
		span
	}
	var wins []win
	p.mu.Lock()
	for m, s := range p.ok {
		wins = append(wins, win{m, span{s[0].start, s[len(s)-1].end}})
	}
	p.mu.Unlock()
	sort.Slice(wins, func(i, j int) bool { return wins[i].start.Before(wins[j].start) })
	var desc []string
	for _, w := range wins {
		desc = append(desc, fmt.Sprintf("%s accepted writes %+.1fs..%+.1fs", w.member, w.start.Sub(origin).Seconds(), w.end.Sub(origin).Seconds()))
	}
	for i := 1; i < len(wins); i++ {
		if !wins[i-1].end.Before(wins[i].start) {
			t.Errorf("two masters accepted writes at the same time: %s", strings.Join(desc, "; "))
			break
		}
	}
	return strings.Join(desc, "; ")
}

// ---------------------------------------------------------------- invariants

// checkInvariants is the check after every drill: exactly one member's
// redis-server says it is master; status names it, and every reachable
// sentinel names it; status's roles match the servers'; the formation
// owns exactly its members' instances.
func checkInvariants(t *testing.T, f *formation) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	var cur *redisv1alpha1.RedisSentinelFormation
	eventually(t, settleBound, "status matching Sentinel and the servers", func() (bool, string) {
		var err error
		if cur, err = getFormation(f); err != nil {
			return false, err.Error()
		}
		if c := condition(cur, redisv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			return false, describeConditions(cur)
		}
		if cur.Status.Master == nil || len(cur.Status.Members) != int(cur.Spec.Members) {
			return false, fmt.Sprintf("status.master %+v, %d members", cur.Status.Master, len(cur.Status.Members))
		}
		want := net.JoinHostPort(cur.Status.Master.Address, fmt.Sprint(cur.Status.Master.Port))
		var masters []string
		for _, m := range cur.Status.Members {
			repl, err := info(f, m.Address, "replication")
			if err != nil {
				return false, fmt.Sprintf("INFO replication on %s: %v", m.Name, err)
			}
			role := redisv1alpha1.RoleReplica
			if repl["role"] == "master" {
				role = redisv1alpha1.RoleMaster
				masters = append(masters, m.Name)
			}
			if m.Role != role {
				return false, fmt.Sprintf("status says %s is %s, its redis-server says %s", m.Name, m.Role, repl["role"])
			}
			if role == redisv1alpha1.RoleReplica && (repl["master_link_status"] != "up" || net.JoinHostPort(repl["master_host"], repl["master_port"]) != want) {
				return false, fmt.Sprintf("replica %s follows %s:%s (link %s), master is %s", m.Name, repl["master_host"], repl["master_port"], repl["master_link_status"], want)
			}
			got, err := sentinelMaster(f, m.Address)
			if err != nil {
				return false, fmt.Sprintf("sentinel on %s: %v", m.Name, err)
			}
			if got != want {
				return false, fmt.Sprintf("sentinel on %s names %s, status.master is %s", m.Name, got, want)
			}
		}
		if len(masters) != 1 || masters[0] != cur.Status.Master.Member {
			return false, fmt.Sprintf("redis-servers answering as master: %v; status.master %s", masters, cur.Status.Master.Member)
		}
		owned, err := incusSrv.ListInstances(context.Background(), "user.rsf.formation-uid", f.uid)
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, i := range owned {
			names = append(names, i.Name)
		}
		sort.Strings(names)
		var wantNames []string
		for i := 1; i <= int(cur.Spec.Members); i++ {
			wantNames = append(wantNames, controllers.InstanceName(f.key.Namespace, f.name(), i))
		}
		if !slices.Equal(names, wantNames) {
			return false, fmt.Sprintf("owned instances %v, want %v", names, wantNames)
		}
		// Each member lives at the address status records for it, pinned
		// on its container, and no two share one.
		holders := map[string]string{}
		for _, i := range owned {
			at := slices.IndexFunc(cur.Status.Members, func(m redisv1alpha1.MemberStatus) bool { return m.Instance == i.Name })
			if at < 0 {
				return false, fmt.Sprintf("instance %s is no member's in status", i.Name)
			}
			m := cur.Status.Members[at]
			if pinned := i.Devices["eth0"]["ipv4.address"]; i.IPv4 != m.Address || pinned != m.Address {
				return false, fmt.Sprintf("instance %s at %s (pinned %q), status records %s", i.Name, i.IPv4, pinned, m.Address)
			}
			if other, dup := holders[i.IPv4]; dup {
				return false, fmt.Sprintf("instances %s and %s share %s", other, i.Name, i.IPv4)
			}
			holders[i.IPv4] = i.Name
		}
		return true, ""
	})
	return cur
}

// ---------------------------------------------------------------- results

// result is one row of the table in docs/reliability.md.
type result struct {
	drill, injected   string
	writes            writeResult
	toReady, fromHeal time.Duration
	notes             []string
	failed            bool
}

var (
	resultsMu sync.Mutex
	results   []*result
)

// newResult registers a row; it is marked failed if the drill fails.
func newResult(t *testing.T, drill, injected string) *result {
	r := &result{drill: drill, injected: injected}
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
	t.Cleanup(func() { r.failed = t.Failed() })
	return r
}

func (r *result) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func resultTable() string {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var b strings.Builder
	b.WriteString("| Drill | Injected | Writes attempted | Acknowledged (WAIT 1) | Lost | Time to Ready | Result | Notes |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|---|---|\n")
	for _, r := range results {
		status := "pass"
		if r.failed {
			status = "**FAIL**"
		}
		ready := "-"
		if r.toReady > 0 {
			ready = fmt.Sprintf("%.1f s", r.toReady.Seconds())
		}
		if r.fromHeal > 0 {
			ready += fmt.Sprintf(" (%.1f s after the fault ended)", r.fromHeal.Seconds())
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %s | %s | %s |\n", r.drill, r.injected, r.writes.attempted, r.writes.acked, r.writes.lost, ready, status, strings.Join(r.notes, "; "))
	}
	return b.String()
}

// ---------------------------------------------------------------- leak watch

// leakWatch holds every password of the run and checks text for them, in
// every form a careless log line or event could carry one: plain,
// JSON-escaped, URL-encoded (query, path and userinfo escaping, as in
// REDIS_URL), and base64 (standard and URL alphabets, with or without
// padding, also when the password sits at any offset inside a longer
// base64-encoded value, such as a dumped Secret's REDIS_URL). It checks
// status as it is read, errors the helpers see, and at the end the
// operator's log and all events.
type leakWatch struct {
	mu       sync.Mutex
	secrets  []string
	known    map[string]bool
	forms    int
	index    map[uint64][]leakNeedle // by the form's first 8 bytes
	findings []string
	reported map[string]bool
	errs     map[string]struct{}
}

// leakNeedle is one form of one password.
type leakNeedle struct {
	text   string
	secret int // index in secrets
	form   string
}

var leaks = &leakWatch{known: map[string]bool{}, index: map[uint64][]leakNeedle{}, reported: map[string]bool{}, errs: map[string]struct{}{}}

// minLeakForm: shorter forms are not looked for (they would match by
// chance); every password of the suite is much longer.
const minLeakForm = 12

// addSecret registers a password (ignoring empty, short and known ones).
func (l *leakWatch) addSecret(s string) {
	if len(s) < minLeakForm {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known[s] {
		return
	}
	l.known[s] = true
	l.secrets = append(l.secrets, s)
	seen := map[string]bool{}
	for _, f := range leakForms(s) {
		if len(f.text) < minLeakForm || seen[f.text] {
			continue
		}
		seen[f.text] = true
		f.secret = len(l.secrets) - 1
		k := prefixKey(f.text, 0)
		l.index[k] = append(l.index[k], f)
		l.forms++
	}
}

// leakForms are the forms a password is looked for in.
func leakForms(s string) []leakNeedle {
	jsonForm, _ := json.Marshal(s)
	userinfo := strings.TrimPrefix(url.UserPassword("u", s).String(), "u:")
	forms := []leakNeedle{
		{text: s, form: "plain"},
		{text: strings.Trim(string(jsonForm), `"`), form: "JSON-escaped"},
		{text: url.QueryEscape(s), form: "URL query-escaped"},
		{text: url.PathEscape(s), form: "URL path-escaped"},
		{text: userinfo, form: "URL userinfo-escaped"},
	}
	for _, enc := range []struct {
		name string
		enc  *base64.Encoding
	}{{"base64", base64.RawStdEncoding}, {"base64url", base64.RawURLEncoding}} {
		for _, src := range []struct{ name, text string }{{"", s}, {" of the URL userinfo form", userinfo}} {
			for off := range 3 {
				forms = append(forms, leakNeedle{text: alignedBase64(enc.enc, src.text, off), form: fmt.Sprintf("%s%s (at byte offset %d mod 3)", enc.name, src.name, off)})
			}
		}
	}
	return forms
}

// alignedBase64 is the part of the base64 encoding of s, preceded by off
// (0-2) other bytes, that depends on s alone: what any base64 text that
// encodes s at that alignment contains, padded or not.
func alignedBase64(enc *base64.Encoding, s string, off int) string {
	full := enc.EncodeToString(append(make([]byte, off), s...))
	from := (8*off + 5) / 6      // the first character with no bit of the filler
	to := 8 * (off + len(s)) / 6 // characters made of s's bits only
	if from >= to || to > len(full) {
		return ""
	}
	return full[from:to]
}

// prefixKey packs text[i:i+8] into a map key.
func prefixKey(text string, i int) uint64 {
	var k uint64
	for j := 0; j < 8; j++ {
		k = k<<8 | uint64(text[i+j])
	}
	return k
}

// check records a finding (never the password itself) when text holds one.
func (l *leakWatch) check(source, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checkLocked(source, text)
}

func (l *leakWatch) checkLocked(source, text string) {
	for i := 0; i+8 <= len(text); i++ {
		needles, ok := l.index[prefixKey(text, i)]
		if !ok {
			continue
		}
		for _, n := range needles {
			if !strings.HasPrefix(text[i:], n.text) {
				continue
			}
			id := fmt.Sprintf("%s|%d|%s", source, n.secret, n.form)
			if l.reported[id] {
				continue
			}
			l.reported[id] = true
			ctx := strings.ReplaceAll(text[max(0, i-120):i], "\n", " ")
			l.findings = append(l.findings, fmt.Sprintf("%s holds password #%d (%s form), after %q", source, n.secret+1, n.form, ctx))
		}
	}
}

func (l *leakWatch) checkJSON(source string, v any) {
	data, err := json.Marshal(v)
	if err == nil {
		l.check(source, string(data))
	}
}

// sawError checks an error a helper got and keeps it for the final scan
// (against the passwords registered by then).
func (l *leakWatch) sawError(source string, err error) {
	msg := err.Error()
	l.check(source+" error", msg)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 5000 {
		l.errs[source+": "+msg] = struct{}{}
	}
}

// report checks the errors seen again (passwords generated after an error
// was seen are looked for too) and returns all findings.
func (l *leakWatch) report() (findings []string, errorsSeen int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e := range l.errs {
		l.checkLocked("helper error", e)
	}
	return slices.Clone(l.findings), len(l.errs)
}

// counts are how many passwords and forms of them the watch looks for.
func (l *leakWatch) counts() (passwords, forms int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.secrets), l.forms
}

// goRedisLog routes go-redis's own log lines through the leak watch.
type goRedisLog struct{}

func (goRedisLog) Printf(_ context.Context, format string, v ...any) {
	leaks.check("go-redis log", fmt.Sprintf(format, v...))
}

func init() { redis.SetLogger(goRedisLog{}) }

// ---------------------------------------------------------------- status history

// tracker watches the formation and records every status.master and
// failovers value the API server held, and every member address, so a
// drill can tell how status moved (not only where it ended). It also reads
// the formation every 250 ms: a watch (re)started around an API server
// restart was seen to deliver none of the formation's versions, not even
// the current one, in CI (drills 4b and 5b); a version older than one
// already recorded is ignored, so the two sources cannot reorder.
type tracker struct {
	mu      sync.Mutex
	origin  time.Time
	entries []trackEntry
	// newest is the resourceVersion of the newest version observed.
	newest  uint64
	polling sync.WaitGroup
	// blank: when status first showed a member without an address.
	blank  map[string]time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

type trackEntry struct {
	at        time.Time
	master    string
	failovers int64
}

func startTracker(t *testing.T, f *formation) *tracker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &tracker{origin: time.Now(), blank: map[string]time.Time{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for ctx.Err() == nil {
			w, err := k8s.Watch(ctx, &redisv1alpha1.RedisSentinelFormationList{}, client.InNamespace(f.key.Namespace))
			if err != nil {
				time.Sleep(time.Second) // the API server may be restarting (drill 5b)
				continue
			}
			for ev := range w.ResultChan() {
				obj, ok := ev.Object.(*redisv1alpha1.RedisSentinelFormation)
				if !ok || obj.Name != f.name() {
					continue
				}
				tr.observe(obj)
			}
			w.Stop()
		}
	}()
	tr.polling.Add(1)
	go func() {
		defer tr.polling.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			obj := &redisv1alpha1.RedisSentinelFormation{}
			if err := k8s.Get(ctx, f.key, obj); err == nil {
				tr.observe(obj)
			}
		}
	}()
	t.Cleanup(tr.stop)
	return tr
}

func (tr *tracker) stop() {
	tr.cancel()
	<-tr.done
	tr.polling.Wait()
}

func (tr *tracker) observe(obj *redisv1alpha1.RedisSentinelFormation) {
	leaks.checkJSON("status of "+obj.Name, obj.Status)
	master := ""
	if obj.Status.Master != nil {
		master = obj.Status.Master.Member
	}
	rv, _ := strconv.ParseUint(obj.ResourceVersion, 10, 64) // etcd's revision
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if rv <= tr.newest {
		return
	}
	tr.newest = rv
	for _, m := range obj.Status.Members {
		if _, seen := tr.blank[m.Name]; m.Address == "" && !seen {
			tr.blank[m.Name] = time.Now()
		}
	}
	if n := len(tr.entries); n > 0 && tr.entries[n-1].master == master && tr.entries[n-1].failovers == obj.Status.Failovers {
		return
	}
	tr.entries = append(tr.entries, trackEntry{time.Now(), master, obj.Status.Failovers})
}

// history describes the recorded values: "m-1 (0) @+0.0s, m-2 (1) @+7.9s".
func (tr *tracker) history() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var parts []string
	for _, e := range tr.entries {
		parts = append(parts, fmt.Sprintf("%s (failovers %d) @%+.1fs", e.master, e.failovers, e.at.Sub(tr.origin).Seconds()))
	}
	return strings.Join(parts, " -> ")
}

// masters is the sequence of distinct status.master values recorded.
func (tr *tracker) masters() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, e := range tr.entries {
		if len(out) == 0 || out[len(out)-1] != e.master {
			out = append(out, e.master)
		}
	}
	return out
}

// blanked reports whether status ever showed the member without an address.
func (tr *tracker) blanked(member string) (time.Duration, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	at, ok := tr.blank[member]
	return at.Sub(tr.origin), ok
}

// checkMasterMoves fails unless status.master went through exactly the
// given members (one failover: old, new; none: old) and the failover
// counter moved by len(want)-1.
func (tr *tracker) checkMasterMoves(t *testing.T, want ...string) {
	t.Helper()
	time.Sleep(time.Second) // the last update's watch event
	got := tr.masters()
	tr.mu.Lock()
	var first, last int64
	if n := len(tr.entries); n > 0 {
		first, last = tr.entries[0].failovers, tr.entries[n-1].failovers
	}
	tr.mu.Unlock()
	if !slices.Equal(got, want) || last-first != int64(len(want)-1) {
		t.Errorf("status.master went %v with failovers %d -> %d; want %v and %d failover(s). History: %s", got, first, last, want, len(want)-1, tr.history())
	}
}

// ---------------------------------------------------------------- sentinel views

// viewRecorder polls every sentinel's SENTINEL MASTER and records each
// change of (address, config-epoch, flags), to show what Sentinel said
// while status moved.
type viewRecorder struct {
	mu     sync.Mutex
	origin time.Time
	log    []string
	stop   chan struct{}
	wg     sync.WaitGroup
}

func recordViews(t *testing.T, f *formation, members []redisv1alpha1.MemberStatus) *viewRecorder {
	t.Helper()
	v := &viewRecorder{origin: time.Now(), stop: make(chan struct{})}
	for _, m := range members {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			s := adminSentinel(f, m.Address, 300*time.Millisecond)
			defer s.Close()
			last := ""
			for {
				select {
				case <-v.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
				res, err := s.Master(ctx, masterName).Result()
				cancel()
				cur := fmt.Sprintf("%s:%s epoch %s flags %s", res["ip"], res["port"], res["config-epoch"], res["flags"])
				if err != nil {
					cur = "error " + errKind(err)
				}
				if cur != last {
					last = cur
					v.mu.Lock()
					v.log = append(v.log, fmt.Sprintf("%+.2fs sentinel %s: %s", time.Since(v.origin).Seconds(), m.Name, cur))
					v.mu.Unlock()
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	t.Cleanup(func() {
		v.halt()
		if t.Failed() {
			v.mu.Lock()
			t.Logf("what the sentinels said (SENTINEL MASTER, changes only):\n%s", strings.Join(v.log, "\n"))
			v.mu.Unlock()
		}
	})
	return v
}

func (v *viewRecorder) halt() {
	select {
	case <-v.stop:
	default:
		close(v.stop)
	}
	v.wg.Wait()
}
