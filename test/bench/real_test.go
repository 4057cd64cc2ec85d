package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// counted are real backends behind counting decorators.
type counted struct {
	incus  *incus.CountingSource
	redis  *redisadmin.CountingDialer
	dialer *redisadmin.GoRedisDialer
	reg    *prometheus.Registry
}

// realDeps are the operator's real backends (local incusd, go-redis, the
// Sentinel event watcher), counted.
func realDeps(b *testing.B) (controllers.Dependencies, *counted) {
	c := &counted{incus: incus.Counting(incus.NewConnector()), reg: prometheus.NewRegistry()}
	c.dialer = redisadmin.NewGoRedisDialer(defaultOptions().RedisTimeout)
	c.redis = redisadmin.Counting(c.dialer)
	b.Cleanup(c.dialer.Close)
	canary := redisclient.NewProber(redisclient.Options{Metrics: metrics.NewCache(c.reg), MaxRetries: -1, DialerRetries: 1})
	return controllers.Dependencies{Incus: c.incus, Redis: c.redis, Metrics: metrics.NewOperator(c.reg), Canary: canary}, c
}

// canaryCommands counts the Redis commands the operator's canary sent: its
// client's hook counts every answered and failed command by subsystem
// (hooked, counted), and every successful probe is a SET and a GET
// (probes, from the canary latency histogram). The hook only counts when
// the reconciler has the Cache: controllers.SetupWithManager builds one but
// (at the time of writing) does not hand it over.
func (c *counted) canaryCommands() (hooked, probes float64) {
	return counterSum(c.reg, "canary", metrics.CacheHitsTotal, metrics.CacheMissesTotal),
		histogramCount(c.reg, metrics.FormationCanaryLatency)
}

// drill is one master kill.
type drill struct {
	killToSwitch, killToStatus, switchToStatus time.Duration
	// switchToStatusRaw is negative when status named the new master
	// before the watcher received +switch-master.
	switchToStatusRaw time.Duration
	from, to          string
	// path is what status.lastFailover says promoted the new master.
	path redisv1alpha1.FailoverPath
}

// failoverPath is one way a hard-stopped master is replaced:
// spec.sentinel.fastFailover on (the fast path) or off (Sentinel alone).
type failoverPath struct {
	tag  string
	fast bool
	want redisv1alpha1.FailoverPath
}

// failoverPaths are the two ways, as BenchmarkFailover measures them.
var failoverPaths = []failoverPath{{"fast", true, redisv1alpha1.FailoverPathFast}, {"sentinel", false, redisv1alpha1.FailoverPathSentinel}}

// BenchmarkFailover runs BENCH_DRILLS failover drills per path on one
// formation (down-after 5000 ms, the default), the paths alternating so
// that both see the same machine: spec.sentinel.fastFailover is set, the
// formation is Ready at that generation, then the master's container is
// hard-stopped while a writer sends SET + WAIT 1 every 20 ms through the
// connection Secret's FailoverClient. Timed, polling every 20 ms: kill ->
// a surviving sentinel's GET-MASTER-ADDR-BY-NAME names another master,
// kill -> status.master changes, +switch-master (status.lastFailover.time,
// the moment the operator's watcher received the event) -> that status was
// seen, and the longest time without a successful write from the kill
// until the formation is Ready again (the operator restarts the stopped
// container and the old master rejoins as a replica). A master is killed
// only once its container has run longer than the operator's crash window.
func BenchmarkFailover(b *testing.B) {
	needStack(b)
	ctx := context.Background()
	drills := envInt("BENCH_DRILLS", 5)
	ns := benchNamespace(b, "bench-drill")
	deps, _ := realDeps(b)
	startManager(b, []string{ns}, defaultOptions(), deps)
	tr := newTracker(b, true)
	f := newFormation(ns, ns)
	tr.create(b, f)
	if _, err := waitReady(ns, []*redisv1alpha1.RedisSentinelFormation{f}, 250*time.Millisecond, 10*time.Minute); err != nil {
		b.Fatal(err)
	}
	w, err := harness.StartWriter(ctx, k8s, f, harness.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}

	type figures struct{ toSwitch, toStatus, gap []time.Duration }
	byPath := map[string]*figures{}
	var switchToStatus []time.Duration
	for i := range drills * len(failoverPaths) {
		path := failoverPaths[i%len(failoverPaths)]
		if err := setFastFailover(ctx, f, path.fast); err != nil {
			b.Fatalf("drill %d: %v", i+1, err)
		}
		if err := outOfCrashWindow(ctx, f); err != nil {
			b.Fatalf("drill %d: %v", i+1, err)
		}
		time.Sleep(time.Second) // the writer runs on the settled formation
		w.ResetGap()
		d, err := killMaster(f)
		if err != nil {
			b.Fatalf("drill %d (%s): %v", i+1, path.tag, err)
		}
		again := time.Now()
		if _, err := waitReady(ns, []*redisv1alpha1.RedisSentinelFormation{f}, 250*time.Millisecond, 10*time.Minute); err != nil {
			b.Fatalf("drill %d: not Ready again: %v", i+1, err)
		}
		gap := w.Stats().LongestGap
		b.Logf("drill %d (%s path, status says %s): %s -> %s: kill -> sentinel %s, kill -> status %s, +switch-master -> status %s, longest write gap %s; Ready again %s after the status change",
			i+1, path.tag, d.path, d.from, d.to, d.killToSwitch.Round(time.Millisecond), d.killToStatus.Round(time.Millisecond),
			d.switchToStatusRaw.Round(time.Millisecond), gap.Round(time.Millisecond), time.Since(again).Round(100*time.Millisecond))
		if d.path != path.want {
			b.Fatalf("drill %d: the new master was promoted through the %s path, want %s", i+1, d.path, path.want)
		}
		fg := byPath[path.tag]
		if fg == nil {
			fg = &figures{}
			byPath[path.tag] = fg
		}
		fg.toSwitch, fg.toStatus, fg.gap = append(fg.toSwitch, d.killToSwitch), append(fg.toStatus, d.killToStatus), append(fg.gap, gap)
		switchToStatus = append(switchToStatus, d.switchToStatus)
	}
	st := w.Stop()
	lost, err := w.Lost(ctx, k8s, f)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("writer: %d writes, %d acknowledged, %d lost over all drills", st.Attempted, st.Acknowledged, len(lost))
	b.ReportMetric(float64(drills), "drills")
	b.ReportMetric(float64(len(lost)), "drill-acked-lost")
	for tag, fg := range byPath {
		b.ReportMetric(median(fg.toSwitch).Seconds(), tag+"-kill-switch-median-s")
		b.ReportMetric(maxOf(fg.toSwitch).Seconds(), tag+"-kill-switch-max-s")
		b.ReportMetric(median(fg.toStatus).Seconds(), tag+"-kill-status-median-s")
		b.ReportMetric(maxOf(fg.toStatus).Seconds(), tag+"-kill-status-max-s")
		b.ReportMetric(median(fg.gap).Seconds(), tag+"-write-gap-median-s")
		b.ReportMetric(maxOf(fg.gap).Seconds(), tag+"-write-gap-max-s")
	}
	b.ReportMetric(median(switchToStatus).Seconds(), "switch-status-median-s")
	b.ReportMetric(maxOf(switchToStatus).Seconds(), "switch-status-max-s")
}

// outOfCrashWindow waits until the master's container was last started by
// the operator more than controllers.CrashWindow ago: a container stopped
// again within it is taken for a crashing one and left stopped until the
// window passed, which is not what a drill measures (the master role
// alternates between two members, each killed every other drill).
func outOfCrashWindow(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) error {
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err != nil {
		return err
	}
	for _, m := range cur.Status.Members {
		if cur.Status.Master != nil && m.Name == cur.Status.Master.Member && m.StartedAt != nil {
			time.Sleep(time.Until(m.StartedAt.Add(controllers.CrashWindow + time.Second)))
		}
	}
	return nil
}

// setFastFailover sets spec.sentinel.fastFailover and waits until the
// formation is Ready at that generation.
func setFastFailover(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, on bool) error {
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err != nil {
		return err
	}
	if cur.Spec.Sentinel.FastFailover == nil || *cur.Spec.Sentinel.FastFailover != on {
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Sentinel.FastFailover = &on
		if err := k8s.Patch(ctx, cur, patch); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for k8s.Get(ctx, client.ObjectKeyFromObject(f), cur) != nil || cur.Status.ObservedGeneration != cur.Generation || !isReady(cur) {
		if time.Now().After(deadline) {
			return fmt.Errorf("not Ready at generation %d with fastFailover %v within 5 minutes", cur.Generation, on)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// alternatingDrills runs drills kill -> status drills (killMaster) per
// formation on path, the formations alternating (which goes first too) so
// that all see the same machine: path is set on every formation first;
// before each drill the master is past the crash window and settled, and
// after it the formation is Ready again (the stopped member restarted), so
// that no drill runs beside another's recovery. It returns kill -> status
// per formation; tags name the formations in the log and errors.
func alternatingDrills(b *testing.B, tags []string, fs []*redisv1alpha1.RedisSentinelFormation, drills int, path failoverPath) [][]time.Duration {
	b.Helper()
	ctx := context.Background()
	for i, f := range fs {
		if err := setFastFailover(ctx, f, path.fast); err != nil {
			b.Fatalf("%s: %v", tags[i], err)
		}
	}
	toStatus := make([][]time.Duration, len(fs))
	for n := range drills {
		for k := range fs {
			i := (k + n) % len(fs)
			f, tag := fs[i], tags[i]
			if err := outOfCrashWindow(ctx, f); err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Second) // settled, as in BenchmarkFailover
			d, err := killMaster(f)
			if err != nil {
				b.Fatalf("%s drill %d (%s path): %v", tag, n+1, path.tag, err)
			}
			if _, err := waitReady(f.Namespace, []*redisv1alpha1.RedisSentinelFormation{f}, 250*time.Millisecond, 10*time.Minute); err != nil {
				b.Fatalf("%s drill %d: not Ready again: %v", tag, n+1, err)
			}
			b.Logf("%s drill %d (%s path, status says %s): %s -> %s: kill -> sentinel %s, kill -> status %s",
				tag, n+1, path.tag, d.path, d.from, d.to, d.killToSwitch.Round(time.Millisecond), d.killToStatus.Round(time.Millisecond))
			if d.path != path.want {
				b.Fatalf("%s drill %d: the new master was promoted through the %s path, want %s", tag, n+1, d.path, path.want)
			}
			toStatus[i] = append(toStatus[i], d.killToStatus)
		}
	}
	return toStatus
}

// killMaster hard-stops the master's container and times the failover.
func killMaster(f *redisv1alpha1.RedisSentinelFormation) (drill, error) {
	ctx := context.Background()
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err != nil {
		return drill{}, err
	}
	old := cur.Status.Master
	if old == nil {
		return drill{}, fmt.Errorf("no master in status")
	}
	var witness, oldInstance string // a surviving sentinel; the master's container
	for _, m := range cur.Status.Members {
		if m.Name == old.Member {
			oldInstance = m.Instance
		}
		if m.Name != old.Member && m.Address != "" && witness == "" {
			witness = net.JoinHostPort(m.Address, fmt.Sprint(cur.Spec.Redis.SentinelPort))
		}
	}
	// As a backend would ask (the backend user on the sentinels may only
	// discover the master), with the connection Secret's TLS material when
	// the formation has TLS.
	tc, err := backendTLS(ctx, f)
	if err != nil {
		return drill{}, err
	}
	s := redis.NewSentinelClient(&redis.Options{Addr: witness, Username: backendUser, Password: sentinelPassword, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1, TLSConfig: tc})
	defer s.Close()
	if err := s.Ping(ctx).Err(); err != nil { // connect before the kill
		return drill{}, fmt.Errorf("witness sentinel %s: %w", witness, err)
	}

	statusSeen := make(chan time.Time, 1)
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go func() {
		for pollCtx.Err() == nil {
			c := &redisv1alpha1.RedisSentinelFormation{}
			if err := k8s.Get(pollCtx, client.ObjectKeyFromObject(f), c); err == nil && c.Status.Master != nil && c.Status.Master.Member != old.Member {
				statusSeen <- time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	killedAt := time.Now()
	if err := incusSrv.StopInstance(ctx, oldInstance, true); err != nil {
		return drill{}, fmt.Errorf("hard-stopping %s: %w", old.Member, err)
	}
	d := drill{from: old.Member}
	deadline := killedAt.Add(2 * time.Minute)
	for {
		addr, err := s.GetMasterAddrByName(ctx, cur.Spec.MasterName).Result()
		if err == nil && len(addr) == 2 && addr[0] != old.Address {
			d.killToSwitch = time.Since(killedAt)
			break
		}
		if time.Now().After(deadline) {
			return d, fmt.Errorf("the witness sentinel still names %s two minutes after the kill (%v %v)", old.Address, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case at := <-statusSeen:
		d.killToStatus = at.Sub(killedAt)
	case <-time.After(2 * time.Minute):
		return d, fmt.Errorf("status.master still %s two minutes after the kill; log tail:\n%s", old.Member, logs.tail(20))
	}
	// lastFailover.time is the +switch-master event's arrival; a reconcile
	// that saw the switch in Sentinel's state first records its own time
	// and the event then corrects it, so read it a moment later.
	time.Sleep(2 * time.Second)
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err != nil {
		return d, err
	}
	if cur.Status.Master != nil {
		d.to = cur.Status.Master.Member
	}
	if lf := cur.Status.LastFailover; lf != nil && lf.To == d.to {
		d.switchToStatusRaw = d.killToStatus - lf.Time.Sub(killedAt)
		d.switchToStatus = max(0, d.switchToStatusRaw)
		d.path = lf.Path
	}
	return d, nil
}

// backendTLS is the TLS configuration a backend builds from the
// formation's connection Secret; nil without TLS.
func backendTLS(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) (*tls.Config, error) {
	if f.Spec.TLS == nil || !f.Spec.TLS.Enabled {
		return nil, nil
	}
	data, err := harness.ConnectionData(ctx, k8s, f)
	if err != nil {
		return nil, err
	}
	cfg, err := config.FromSecretData(data)
	if err != nil {
		return nil, err
	}
	return cfg.TLSConfig()
}

// BenchmarkSteadyState brings one formation to Ready on real containers,
// waits until a whole resync period passes without an Incus write, then
// counts over BENCH_STEADY (60 s) the Incus calls (reads, writes) and the
// Redis commands per reconcile, reconciles per second and status writes
// (resource updates) per reconcile. The resync period is the operator's
// default (15 s).
func BenchmarkSteadyState(b *testing.B) {
	needStack(b)
	window := envDuration("BENCH_STEADY", time.Minute)
	ns := benchNamespace(b, "bench-steady")
	deps, c := realDeps(b)
	opts := defaultOptions()
	startManager(b, []string{ns}, opts, deps)
	tr := newTracker(b, true)
	f := newFormation(ns, ns)
	tr.create(b, f)
	if _, err := waitReady(ns, []*redisv1alpha1.RedisSentinelFormation{f}, 250*time.Millisecond, 10*time.Minute); err != nil {
		b.Fatal(err)
	}

	// Settled: one resync period and a margin without an Incus write.
	quiet := false
	for range 6 {
		c.incus.Reset()
		time.Sleep(opts.ResyncPeriod + 5*time.Second)
		if c.incus.Writes() == 0 {
			quiet = true
			break
		}
		b.Logf("not settled yet: Incus calls %v", c.incus.Calls())
	}
	if !quiet {
		b.Logf("the formation never went a resync period without an Incus write; measuring anyway")
	}

	ctx := context.Background()
	w, err := k8s.Watch(ctx, &redisv1alpha1.RedisSentinelFormationList{}, client.InNamespace(ns))
	if err != nil {
		b.Fatal(err)
	}
	counted := make(chan int)
	changed := map[string]int{} // status fields that changed in those writes
	go func() {
		n := 0
		var prev *redisv1alpha1.RedisSentinelFormation
		for ev := range w.ResultChan() {
			cur, ok := ev.Object.(*redisv1alpha1.RedisSentinelFormation)
			if !ok {
				continue
			}
			if ev.Type == watch.Modified {
				n++
				if prev != nil {
					for _, field := range statusDiff(prev, cur) {
						changed[field]++
					}
				}
			}
			prev = cur
		}
		counted <- n
	}()
	time.Sleep(200 * time.Millisecond) // the watch's initial ADDED events
	c.incus.Reset()
	c.redis.Reset()
	hooked0, probes0 := c.canaryCommands()
	r0 := testenv.FormationReconciles()
	start := time.Now()
	time.Sleep(window)
	reconciles := testenv.FormationReconciles() - r0
	hooked1, probes1 := c.canaryCommands()
	// Each successful probe is SET + GET; the hook count, when it works,
	// also has the failed ones.
	canary := max(hooked1-hooked0, 2*(probes1-probes0))
	elapsed := time.Since(start)
	w.Stop()
	updates := <-counted
	cmds := c.redis.Counts()
	b.Logf("over %s: %.0f reconciles, Incus calls %v, Redis calls %v (%d commands), %.0f canary probes (%.0f commands counted by its hook), %d resource updates (changed: %v)",
		elapsed.Round(time.Millisecond), reconciles, c.incus.Calls(), cmds.Calls, cmds.Commands, probes1-probes0, hooked1-hooked0, updates, changed)
	if os.Getenv("BENCH_DEBUG") != "" {
		b.Logf("log tail:\n%s", logs.tail(60))
	}
	if reconciles == 0 {
		b.Fatal("no reconcile during the window")
	}
	b.ReportMetric(float64(c.incus.Writes())/reconciles, "steady-incus-writes-per-reconcile")
	b.ReportMetric(float64(c.incus.Reads())/reconciles, "steady-incus-reads-per-reconcile")
	b.ReportMetric(float64(cmds.Commands)/reconciles, "steady-redis-cmds-per-reconcile")
	b.ReportMetric(float64(cmds.WriteCommands)/reconciles, "steady-redis-write-cmds-per-reconcile")
	b.ReportMetric(canary/reconciles, "steady-canary-cmds-per-reconcile")
	b.ReportMetric(reconciles/elapsed.Seconds(), "steady-reconciles-per-s")
	b.ReportMetric(float64(updates)/reconciles, "steady-status-writes-per-reconcile")
	b.ReportMetric(opts.ResyncPeriod.Seconds(), "steady-resync-period-s")
}

// statusDiff names the status fields (members[i].field for members) that
// differ between two versions of a formation.
func statusDiff(a, b *redisv1alpha1.RedisSentinelFormation) []string {
	flat := func(f *redisv1alpha1.RedisSentinelFormation) map[string]string {
		out := map[string]string{}
		var st map[string]any
		data, _ := json.Marshal(f.Status)
		_ = json.Unmarshal(data, &st)
		for k, v := range st {
			if list, ok := v.([]any); ok && k == "members" {
				for i, m := range list {
					fields, _ := m.(map[string]any)
					for fk, fv := range fields {
						out[fmt.Sprintf("members[%d].%s", i, fk)] = fmt.Sprint(fv)
					}
				}
				continue
			}
			data, _ := json.Marshal(v)
			out[k] = string(data)
		}
		return out
	}
	fa, fb := flat(a), flat(b)
	var diff []string
	for k, v := range fb {
		if fa[k] != v {
			diff = append(diff, k)
		}
	}
	for k := range fa {
		if _, ok := fb[k]; !ok {
			diff = append(diff, k)
		}
	}
	if a.Generation != b.Generation {
		diff = append(diff, "metadata.generation")
	}
	return diff
}
