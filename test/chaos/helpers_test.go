package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"sort"
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

// formation is a formation of the suite with its passwords.
type formation struct {
	key              client.ObjectKey
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

// newFormation creates a namespace, the password Secrets (random
// passwords, registered with the leak watch first) and a formation named
// chaos-<random>.
func newFormation(t *testing.T) *formation {
	t.Helper()
	ctx := context.Background()
	name := "chaos-" + randomHex(2)
	f := &formation{key: client.ObjectKey{Namespace: name, Name: name},
		password: "chaos-pw-" + randomHex(12), sentinelPassword: "chaos-spw-" + randomHex(12)}
	leaks.addSecret(f.password)
	leaks.addSecret(f.sentinelPassword)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	for secret, value := range map[string]string{"redis-pw": f.password, "sentinel-pw": f.sentinelPassword} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: name}, StringData: map[string]string{"password": value}}
		if err := k8s.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	obj := &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: name}}
	obj.Spec.Auth.PasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "redis-pw", Key: "password"}
	obj.Spec.Auth.SentinelPasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "sentinel-pw", Key: "password"}
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("creating formation: %v", err)
	}
	f.uid = string(obj.UID)
	return f
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
		name := fmt.Sprintf("%s-%d", f.name(), i)
		inst, err := incusSrv.GetInstance(context.Background(), name)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", name, err)
			continue
		}
		fmt.Fprintf(&b, "%s: %s %q\n", name, inst.Status, inst.IPv4)
		if inst.IPv4 != "" {
			s := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(inst.IPv4, fmt.Sprint(sentinelPort)), Password: f.sentinelPassword,
				DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1, DisableIdentity: true})
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

// redisAt is a direct client to one member's redis-server (port 6379) or
// sentinel (26379); no retries, short timeouts.
func redisAt(address string, port int, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: net.JoinHostPort(address, fmt.Sprint(port)), Password: password,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, DisableIdentity: true, ContextTimeoutEnabled: true, PoolSize: 2,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// redisAtAuth is redisAt with the password asked for on every new
// connection.
func redisAtAuth(address string, port int, password func() string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                net.JoinHostPort(address, fmt.Sprint(port)),
		CredentialsProvider: func() (string, string) { return "", password() },
		DialTimeout:         time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, DisableIdentity: true, ContextTimeoutEnabled: true, PoolSize: 2,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// info reads one INFO section of a member's redis-server.
func info(address, password, section string) (map[string]string, error) {
	c := redisAt(address, redisPort, password)
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

// sentinelMaster asks a member's sentinel for the master's address.
func sentinelMaster(address, sentinelPassword string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(address, fmt.Sprint(sentinelPort)), Password: sentinelPassword,
		DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1, DisableIdentity: true})
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
	password := f.password
	for _, m := range members {
		p.watch(m.Name, m.Address, func() string { return password })
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

// watch starts probing a member's redis-server; password is asked for on
// every new connection (a rotation drill switches it). A member probed
// already, or probes halted, start nothing.
func (p *probes) watch(member, address string, password func() string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.watched[member] {
		return
	}
	p.watched[member] = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c := redisAtAuth(address, redisPort, password)
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
			repl, err := info(m.Address, f.password, "replication")
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
			got, err := sentinelMaster(m.Address, f.sentinelPassword)
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
			wantNames = append(wantNames, fmt.Sprintf("%s-%d", f.name(), i))
		}
		if !slices.Equal(names, wantNames) {
			return false, fmt.Sprintf("owned instances %v, want %v", names, wantNames)
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

// leakWatch holds every password of the run and checks text for them:
// status as it is read, errors the helpers see, and at the end the
// operator's log and all events.
type leakWatch struct {
	mu       sync.Mutex
	secrets  []string
	findings []string
	errs     map[string]struct{}
}

var leaks = &leakWatch{errs: map[string]struct{}{}}

func (l *leakWatch) addSecret(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, s)
}

// check records a finding (never the password itself) when text holds one.
func (l *leakWatch) check(source, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.secrets {
		if idx := strings.Index(text, s); idx >= 0 {
			ctx := strings.ReplaceAll(text[max(0, idx-120):idx], "\n", " ")
			l.findings = append(l.findings, fmt.Sprintf("%s holds password #%d, after %q", source, i+1, ctx))
		}
	}
}

func (l *leakWatch) checkJSON(source string, v any) {
	data, err := json.Marshal(v)
	if err == nil {
		l.check(source, string(data))
	}
}

// sawError checks an error a helper got and keeps it for the final scan.
func (l *leakWatch) sawError(source string, err error) {
	msg := err.Error()
	l.check(source+" error", msg)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 5000 {
		l.errs[source+": "+msg] = struct{}{}
	}
}

func (l *leakWatch) report() (findings []string, errorsSeen int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.findings), len(l.errs)
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
// drill can tell how status moved (not only where it ended).
type tracker struct {
	mu      sync.Mutex
	origin  time.Time
	entries []trackEntry
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
	t.Cleanup(tr.stop)
	return tr
}

func (tr *tracker) stop() {
	tr.cancel()
	<-tr.done
}

func (tr *tracker) observe(obj *redisv1alpha1.RedisSentinelFormation) {
	leaks.checkJSON("status of "+obj.Name, obj.Status)
	master := ""
	if obj.Status.Master != nil {
		master = obj.Status.Master.Member
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
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
			s := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(m.Address, fmt.Sprint(sentinelPort)), Password: f.sentinelPassword,
				DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, MaxRetries: -1, DisableIdentity: true})
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
