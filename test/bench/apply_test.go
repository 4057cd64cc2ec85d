package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/lxc/incus/v6/shared/api"
	"github.com/redis/go-redis/v9"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

const (
	// dirPool is the dir pool BenchmarkApplyToReady creates beside the
	// lab's pool (and deletes at its end).
	dirPool = "rsf-bench-dir"
	// defaultMembers is the schema's default spec.members.
	defaultMembers = 3
	// floorKey marks the containers of a floor measurement (value: the
	// measurement's name prefix), so that only those are ever deleted.
	floorKey = "user.rsf-bench.floor"
)

// benchPool is a storage pool BenchmarkApplyToReady measures on.
type benchPool struct {
	tag    string // in the metric names: "lab" or "dir"
	name   string
	driver string
}

// BenchmarkApplyToReady measures apply -> Ready as a user of the lab sees
// it, next to the raw Incus floor of the same machine, on two storage pools
// side by side: the lab's pool (rsf, whatever its driver) and a dir pool the
// benchmark creates (rsf-bench-dir, deleted at the end; the IncusHost
// `local` allows it for the run). The operator is the operator binary as
// its own process with the lab's flags (hack/lab.sh), watching every
// namespace of the envtest API server.
//
// BENCH_APPLY_RUNS (5) times per pool, the pools alternating run by run so
// that both see the same machine:
//   - the floor: three containers of the lab image launched at once with
//     the Incus client as `incus launch` would (profile rsf-redis, root disk
//     on the pool, eth0 on rsfbr0), timed until all three are Running with
//     an IPv4 address, then deleted;
//   - apply -> Ready of one formation on the pool, with each phase's time
//     since the apply as seen from outside (watch.go): its containers
//     created, started and addressed (Incus events and state), every member
//     configured, every replica linked, the sentinels agreeing (the
//     formation's status, watched) and Ready. The formation is deleted, and
//     its containers gone, before the next run.
//
// Then BENCH_REBUILD_RUNS (3) member rebuilds per pool, alternating, on one
// Ready formation per pool: a replica's container is deleted (as `incus
// delete --force`) and timed until its replacement is Running with an
// address, status shows it linked again, every member's sentinel (asked
// with the operator's admin user) lists it as a replica without s_down,
// o_down or disconnected, and the formation is Ready. Right before each,
// the floor of one container launched alone on the pool, the fair floor of
// a rebuild.
//
// Last, BENCH_APPLY_PARALLEL (5) formations applied at once on the lab's
// pool, until all are Ready.
func BenchmarkApplyToReady(b *testing.B) {
	needStack(b)
	runs, parallel, rebuilds := envInt("BENCH_APPLY_RUNS", 5), envInt("BENCH_APPLY_PARALLEL", 5), envInt("BENCH_REBUILD_RUNS", 3)
	requireNoFormations(b)
	pools := benchPools(b)
	allowPools(b, pools)
	ns := benchNamespace(b, "bench-apply")
	op := startOperator(b)
	tr := newTracker(b, true)
	iw := watchInstances(b)
	fw := watchFormations(b, ns)
	for _, p := range pools {
		b.Logf("pool %s: %s, driver %s", p.tag, p.name, p.driver)
	}

	// Unmeasured: the first launch on a copy-on-write pool makes the
	// image's volume there, which every later launch clones.
	for _, p := range pools {
		if _, _, err := measureFloor(iw, p.name, 3); err != nil {
			b.Fatalf("warm-up launch on %s: %v", p.name, err)
		}
	}

	type figures struct {
		floor, launched []time.Duration
		phases          [numPhases][]time.Duration
		// singleFloor: one container launched alone, before each rebuild.
		singleFloor []time.Duration
		rebuilds    []rebuildTimes
	}
	fig := map[string]*figures{}
	for _, p := range pools {
		fig[p.tag] = &figures{}
	}
	for i := range runs {
		for j := range pools {
			p := pools[(i+j)%len(pools)]
			launched, addressed, err := measureFloor(iw, p.name, 3)
			if err != nil {
				b.Fatalf("run %d, %s pool: floor: %v", i+1, p.tag, err)
			}
			fg := fig[p.tag]
			fg.floor, fg.launched = append(fg.floor, addressed), append(fg.launched, launched)

			f := poolFormation(ns, fmt.Sprintf("%s-%s%d", ns, p.tag, i+1), p.name)
			ups, err := applyAll(tr, fw, iw, []*redisv1alpha1.RedisSentinelFormation{f}, 10*time.Minute)
			if err != nil {
				b.Fatalf("run %d, %s pool: %v\noperator log tail:\n%s", i+1, p.tag, err, op.tail(20))
			}
			for ph := range numPhases {
				fg.phases[ph] = append(fg.phases[ph], ups[0].since(ph))
			}
			b.Logf("run %d, %s pool: floor %s (launched %s); apply -> Ready %s: %s", i+1, p.tag,
				addressed.Round(10*time.Millisecond), launched.Round(10*time.Millisecond), ups[0].since(phaseReady).Round(10*time.Millisecond), ups[0])
			if err := removeFormations(tr, iw, f); err != nil {
				b.Fatal(err)
			}
		}
	}

	if rebuilds > 0 {
		kept := map[string]*redisv1alpha1.RedisSentinelFormation{}
		var all []*redisv1alpha1.RedisSentinelFormation
		for _, p := range pools {
			f := poolFormation(ns, fmt.Sprintf("%s-%s-rebuild", ns, p.tag), p.name)
			kept[p.tag] = f
			all = append(all, f)
		}
		if _, err := applyAll(tr, fw, iw, all, 10*time.Minute); err != nil {
			b.Fatalf("formations for the rebuilds: %v\noperator log tail:\n%s", err, op.tail(20))
		}
		for r := range rebuilds {
			for j := range pools {
				p := pools[(r+j)%len(pools)]
				_, single, err := measureFloor(iw, p.name, 1)
				if err != nil {
					b.Fatalf("rebuild %d, %s pool: floor of one launch: %v", r+1, p.tag, err)
				}
				fig[p.tag].singleFloor = append(fig[p.tag].singleFloor, single)
				t, err := rebuildReplica(fw, iw, kept[p.tag], r)
				if err != nil {
					b.Fatalf("rebuild %d, %s pool: %v\noperator log tail:\n%s", r+1, p.tag, err, op.tail(20))
				}
				fig[p.tag].rebuilds = append(fig[p.tag].rebuilds, t)
				b.Logf("rebuild %d, %s pool: one launch alone %s; %s", r+1, p.tag, single.Round(10*time.Millisecond), t)
			}
		}
		if err := removeFormations(tr, iw, all...); err != nil {
			b.Fatal(err)
		}
	}

	// The floor of the formations' containers all launched at once: what
	// Incus alone needs for them on this machine.
	_, parallelFloor, err := measureFloor(iw, pools[0].name, parallel*3)
	if err != nil {
		b.Fatalf("floor of %d containers at once: %v", parallel*3, err)
	}
	b.Logf("floor of %d launches at once on %s: %s", parallel*3, pools[0].name, parallelFloor.Round(10*time.Millisecond))
	// The same two with the servers started in every container: how much
	// longer this machine takes for 5 formations' containers than for 1.
	servedOne, err := measureServedFloor(iw, pools[0].name, 3)
	if err != nil {
		b.Fatal(err)
	}
	servedAll, err := measureServedFloor(iw, pools[0].name, parallel*3)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("floor with the servers started on %s: 3 containers %s, %d at once %s (%.2fx)", pools[0].name,
		servedOne.Round(10*time.Millisecond), parallel*3, servedAll.Round(10*time.Millisecond), servedAll.Seconds()/servedOne.Seconds())
	var fs []*redisv1alpha1.RedisSentinelFormation
	for i := range parallel {
		fs = append(fs, poolFormation(ns, fmt.Sprintf("%s-p%d", ns, i+1), pools[0].name))
	}
	ups, err := applyAll(tr, fw, iw, fs, 15*time.Minute)
	if err != nil {
		b.Fatalf("%d at once: %v\noperator log tail:\n%s", parallel, err, op.tail(20))
	}
	var each []time.Duration
	for _, u := range ups {
		each = append(each, u.since(phaseReady))
	}
	b.Logf("%d at once on %s: each Ready after %v", parallel, pools[0].name, each)
	for i, u := range ups {
		b.Logf("%d at once, %s: %s", parallel, fs[i].Name, u)
	}
	if err := removeFormations(tr, iw, fs...); err != nil {
		b.Fatal(err)
	}

	for _, p := range pools {
		fg := fig[p.tag]
		ready, floor := median(fg.phases[phaseReady]), median(fg.floor)
		b.ReportMetric(floor.Seconds(), "floor-"+p.tag+"-median-s")
		b.ReportMetric(maxOf(fg.floor).Seconds(), "floor-"+p.tag+"-max-s")
		b.ReportMetric(median(fg.launched).Seconds(), "floor-"+p.tag+"-launched-median-s")
		b.ReportMetric(ready.Seconds(), "apply-"+p.tag+"-ready-median-s")
		b.ReportMetric(maxOf(fg.phases[phaseReady]).Seconds(), "apply-"+p.tag+"-ready-max-s")
		b.ReportMetric(float64(len(fg.floor)), "apply-"+p.tag+"-runs")
		b.ReportMetric((ready - floor).Seconds(), "apply-"+p.tag+"-overhead-s")
		if floor > 0 {
			b.ReportMetric(ready.Seconds()/floor.Seconds(), "apply-"+p.tag+"-floor-ratio")
		}
		for ph := range phaseReady {
			b.ReportMetric(median(fg.phases[ph]).Seconds(), "apply-"+p.tag+"-"+ph.String()+"-median-s")
		}
		if len(fg.rebuilds) > 0 {
			pick := func(get func(rebuildTimes) time.Duration) []time.Duration {
				var out []time.Duration
				for _, t := range fg.rebuilds {
					out = append(out, get(t))
				}
				return out
			}
			redundant := pick(rebuildTimes.redundant)
			b.ReportMetric(median(pick(func(t rebuildTimes) time.Duration { return t.deletion })).Seconds(), "rebuild-"+p.tag+"-deletion-median-s")
			b.ReportMetric(median(pick(func(t rebuildTimes) time.Duration { return t.replaced })).Seconds(), "rebuild-"+p.tag+"-replaced-median-s")
			b.ReportMetric(median(pick(func(t rebuildTimes) time.Duration { return t.linked })).Seconds(), "rebuild-"+p.tag+"-linked-median-s")
			b.ReportMetric(median(pick(func(t rebuildTimes) time.Duration { return t.known })).Seconds(), "rebuild-"+p.tag+"-known-median-s")
			b.ReportMetric(median(redundant).Seconds(), "rebuild-"+p.tag+"-redundant-median-s")
			b.ReportMetric(maxOf(redundant).Seconds(), "rebuild-"+p.tag+"-redundant-max-s")
			b.ReportMetric(median(pick(func(t rebuildTimes) time.Duration { return t.ready })).Seconds(), "rebuild-"+p.tag+"-ready-median-s")
			b.ReportMetric(float64(len(fg.rebuilds)), "rebuild-"+p.tag+"-runs")
			b.ReportMetric(median(fg.singleFloor).Seconds(), "floor-"+p.tag+"-single-median-s")
		}
	}
	one := median(fig[pools[0].tag].phases[phaseReady])
	b.ReportMetric(maxOf(each).Seconds(), "apply-parallel-all-ready-s")
	b.ReportMetric(median(each).Seconds(), "apply-parallel-median-s")
	b.ReportMetric(float64(parallel), "apply-parallel-formations")
	b.ReportMetric(parallelFloor.Seconds(), "apply-parallel-floor-s")
	b.ReportMetric(servedOne.Seconds(), "floor-served-one-s")
	b.ReportMetric(servedAll.Seconds(), "floor-served-parallel-s")
	b.ReportMetric(servedAll.Seconds()/servedOne.Seconds(), "floor-served-parallel-ratio")
	if one > 0 {
		b.ReportMetric(maxOf(each).Seconds()/one.Seconds(), "apply-parallel-ratio")
	}
}

// benchPools are the lab's pool, with its driver as Incus reports it, and
// the dir pool, created for the run (or reused when an interrupted run left
// it) and deleted when the benchmark ends, after its formations.
func benchPools(b *testing.B) []benchPool {
	b.Helper()
	c, err := incusclient.ConnectIncusUnix(incus.DefaultSocketPath, nil)
	if err != nil {
		b.Fatal(err)
	}
	lab, _, err := c.GetStoragePool(labPool)
	if err != nil {
		b.Fatalf("the lab's storage pool %s: %v", labPool, err)
	}
	if existing, _, err := c.GetStoragePool(dirPool); err == nil {
		if existing.Driver != "dir" {
			b.Fatalf("storage pool %s exists with driver %s; this benchmark wants its own dir pool there", dirPool, existing.Driver)
		}
		b.Logf("reusing the storage pool %s an earlier run left", dirPool)
	} else if err := c.CreateStoragePool(api.StoragePoolsPost{
		Name: dirPool, Driver: "dir",
		StoragePoolPut: api.StoragePoolPut{Description: "test/bench BenchmarkApplyToReady (deleted when it ends)"},
	}); err != nil {
		b.Fatalf("creating the storage pool %s: %v", dirPool, err)
	}
	b.Cleanup(func() {
		if err := c.DeleteStoragePool(dirPool); err != nil {
			b.Errorf("deleting the storage pool %s: %v", dirPool, err)
		}
	})
	return []benchPool{{tag: "lab", name: labPool, driver: lab.Driver}, {tag: "dir", name: dirPool, driver: "dir"}}
}

// allowPools adds the pools to the lab IncusHost's allowed storage pools
// for the run and puts the list back when the benchmark ends.
func allowPools(b *testing.B, pools []benchPool) {
	b.Helper()
	ctx := context.Background()
	key := client.ObjectKey{Name: testenv.LabHost}
	host := &redisv1alpha1.IncusHost{}
	if err := k8s.Get(ctx, key, host); err != nil {
		b.Fatal(err)
	}
	was := slices.Clone(host.Spec.Allowed.StoragePools)
	patch := client.MergeFrom(host.DeepCopy())
	for _, p := range pools {
		if !slices.Contains(host.Spec.Allowed.StoragePools, p.name) {
			host.Spec.Allowed.StoragePools = append(host.Spec.Allowed.StoragePools, p.name)
		}
	}
	if err := k8s.Patch(ctx, host, patch); err != nil {
		b.Fatalf("allowing the pools on IncusHost %s: %v", key.Name, err)
	}
	b.Cleanup(func() {
		if err := k8s.Get(ctx, key, host); err != nil {
			b.Errorf("IncusHost %s: %v", key.Name, err)
			return
		}
		patch := client.MergeFrom(host.DeepCopy())
		host.Spec.Allowed.StoragePools = was
		if err := k8s.Patch(ctx, host, patch); err != nil {
			b.Errorf("restoring the allowed pools of IncusHost %s: %v", key.Name, err)
		}
	})
}

// poolFormation is newFormation with its root disks on pool.
func poolFormation(ns, name, pool string) *redisv1alpha1.RedisSentinelFormation {
	f := newFormation(ns, name)
	f.Spec.Incus.StoragePool = pool
	return f
}

// memberInstances are the container names the operator gives the members
// of a formation with the default member count.
func memberInstances(f *redisv1alpha1.RedisSentinelFormation) []string {
	var names []string
	for i := 1; i <= defaultMembers; i++ {
		names = append(names, controllers.InstanceName(f.Namespace, f.Name, i))
	}
	return names
}

// applyAll creates the formations back to back and waits until every one
// is Ready and every phase of its bring-up was seen; the times are since
// the first create. Their containers stay followed until removeFormations.
func applyAll(tr *tracker, fw *formationWatch, iw *instanceWatch, fs []*redisv1alpha1.RedisSentinelFormation, timeout time.Duration) ([]bringUp, error) {
	start := time.Now()
	for _, f := range fs {
		iw.follow(memberInstances(f)...)
		fw.trackBringUp(f.Name, start)
	}
	for _, f := range fs {
		if err := tr.tryCreate(f); err != nil {
			return nil, err
		}
	}
	ups := make([]bringUp, len(fs))
	deadline := start.Add(timeout)
	for i, f := range fs {
		names := memberInstances(f)
		for {
			u := fw.bringUp(f.Name)
			u.at[phaseCreated] = iw.all(names, func(s seen) time.Time { return s.created })
			u.at[phaseStarted] = iw.all(names, func(s seen) time.Time { return s.started })
			u.at[phaseAddress] = iw.all(names, func(s seen) time.Time { return s.addressed })
			if !slices.ContainsFunc(u.at[:], time.Time.IsZero) {
				ups[i] = u
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s not through every phase %s after the apply (seen: %s; status: %s)", f.Name, timeout, u, readyReason(fw.current(f.Name)))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return ups, nil
}

// String lists the phases seen, in seconds since the apply.
func (u bringUp) String() string {
	var parts []string
	for p := range numPhases {
		if !u.at[p].IsZero() {
			parts = append(parts, fmt.Sprintf("%s %.2f", p, u.since(p).Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}

// removeFormations deletes formations, waits until their containers are
// gone and stops following them.
func removeFormations(tr *tracker, iw *instanceWatch, fs ...*redisv1alpha1.RedisSentinelFormation) error {
	if err := deleteAndWait(fs, true, 5*time.Minute); err != nil {
		return err
	}
	tr.forget(fs...)
	for _, f := range fs {
		iw.forget(memberInstances(f)...)
	}
	return nil
}

// measureFloor launches n containers of the lab image at once on pool with
// the Incus client, as `incus launch` would (profile rsf-redis, root disk on
// the pool, eth0 on rsfbr0), and times until their create operations
// returned (launched) and until all were Running with an IPv4 address
// (addressed); then deletes them.
func measureFloor(iw *instanceWatch, pool string, n int) (launched, addressed time.Duration, err error) {
	return launchFloor(iw, pool, n, nil)
}

// measureServedFloor is measureFloor's time until, in every container,
// redis-server and redis-sentinel were started (on the image's own
// configuration, by one exec as soon as the container has its address):
// the part of a bring-up that is the platform's, with the operator's
// configuration, Sentinel and replication left out.
func measureServedFloor(iw *instanceWatch, pool string, n int) (time.Duration, error) {
	_, served, err := launchFloor(iw, pool, n, func(ctx context.Context, name string) error {
		res, err := incusSrv.Exec(ctx, name, []string{"systemctl", "start", "redis-server", "redis-sentinel"})
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("starting the servers in %s: exit %d: %s", name, res.ExitCode, res.Stderr)
		}
		return err
	})
	return served, err
}

// launchFloor is measureFloor; with then, addressed is when then returned
// for every container, each called as soon as its container had an address.
func launchFloor(iw *instanceWatch, pool string, n int, then func(context.Context, string) error) (launched, addressed time.Duration, err error) {
	ctx := context.Background()
	prefix := uniqueName("bench-floor")
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("%s-%d", prefix, i+1))
	}
	iw.follow(names...)
	defer iw.forget(names...)
	defer func() { err = errors.Join(err, deleteFloor(ctx, prefix, names)) }()
	start := time.Now()
	err = forEach(names, func(name string) error {
		return incusSrv.CreateInstance(ctx, incus.InstanceSpec{
			Name:     name,
			Image:    labImage,
			Profiles: []string{labProfile},
			Config:   map[string]string{floorKey: prefix},
			Devices: map[string]map[string]string{
				"root": {"type": "disk", "path": "/", "pool": pool},
				"eth0": {"type": "nic", "name": "eth0", "network": labNetwork},
			},
		})
	})
	launched = time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	thenCtx, cancel := context.WithDeadline(ctx, start.Add(5*time.Minute))
	defer cancel()
	err = forEach(names, func(name string) error {
		for iw.get(name).addressed.IsZero() {
			if thenCtx.Err() != nil {
				return fmt.Errorf("%s not Running with an IPv4 address 5 minutes after the launch", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if then == nil {
			return nil
		}
		return then(thenCtx, name)
	})
	if err != nil {
		return 0, 0, err
	}
	if then == nil {
		// When the watch saw the last address, not when this loop woke up.
		return launched, iw.all(names, func(s seen) time.Time { return s.addressed }).Sub(start), nil
	}
	return launched, time.Since(start), nil
}

// deleteFloor deletes the floor's containers: those of names that carry
// its mark (a name someone else took is left alone).
func deleteFloor(ctx context.Context, prefix string, names []string) error {
	return forEach(names, func(name string) error {
		inst, err := incusSrv.GetInstance(ctx, name)
		if errors.Is(err, incus.ErrNotFound) || (err == nil && inst.Config[floorKey] != prefix) {
			return nil
		}
		if err != nil {
			return err
		}
		return incusSrv.DeleteInstance(ctx, name)
	})
}

// forEach runs fn for every name at once and joins the errors.
func forEach(names []string, fn func(string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() { errs[i] = fn(n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// rebuildTimes are one member rebuild's times since its container was
// deleted (the delete call returned: the container is gone).
type rebuildTimes struct {
	// deletion is how long the delete itself took (a force stop, then the
	// delete): the member was lost from its start, but Incus, not the
	// operator, spends it.
	deletion time.Duration
	// replaced: the new container Running with an IPv4 address; linked:
	// status shows it a linked replica again; known: every member's
	// sentinel lists it as a replica in good standing; ready: Ready=True.
	replaced, linked, known, ready time.Duration
}

// redundant is full redundancy again: linked and known to every sentinel.
func (t rebuildTimes) redundant() time.Duration { return max(t.linked, t.known) }

func (t rebuildTimes) String() string {
	return fmt.Sprintf("delete took %.2f; since: replaced %.2f, linked %.2f, known to every sentinel %.2f (full redundancy %.2f), Ready %.2f",
		t.deletion.Seconds(), t.replaced.Seconds(), t.linked.Seconds(), t.known.Seconds(), t.redundant().Seconds(), t.ready.Seconds())
}

// rebuildReplica deletes the container of one of f's replicas (the run-th,
// by name) and times its rebuild. f must be Ready; first every sentinel
// must know every replica, so that the rebuild starts from full
// redundancy.
func rebuildReplica(fw *formationWatch, iw *instanceWatch, f *redisv1alpha1.RedisSentinelFormation, run int) (rebuildTimes, error) {
	ctx := context.Background()
	cur := fw.current(f.Name)
	if cur == nil || !isReady(cur) {
		return rebuildTimes{}, fmt.Errorf("%s is not Ready (%s)", f.Name, readyReason(cur))
	}
	var replicas []redisv1alpha1.MemberStatus
	for _, m := range cur.Status.Members {
		if m.Role == redisv1alpha1.RoleReplica {
			replicas = append(replicas, m)
		}
	}
	if len(replicas) == 0 {
		return rebuildTimes{}, fmt.Errorf("%s has no replica", f.Name)
	}
	victim := replicas[run%len(replicas)]
	creds, err := harness.AdminCredentials(ctx, k8s, cur)
	if err != nil {
		return rebuildTimes{}, err
	}
	probe := &sentinelProbe{creds: creds, port: int(cur.Spec.Redis.SentinelPort), master: cur.Spec.MasterName, clients: map[string]*redis.SentinelClient{}}
	defer probe.close()
	names := memberInstances(f)
	redisPort := int(cur.Spec.Redis.Port)

	// Full redundancy before the deletion.
	deadline := time.Now().Add(2 * time.Minute)
	for _, m := range replicas {
		for !probe.allKnow(ctx, memberAddresses(iw, names), iw.get(m.Instance).address, redisPort) {
			if time.Now().After(deadline) {
				return rebuildTimes{}, fmt.Errorf("%s: not every sentinel lists %s as a replica in good standing 2 minutes after Ready", f.Name, m.Name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	fw.trackRebuild(f.Name, victim.Name)
	deleting := time.Now()
	if err := incusSrv.DeleteInstance(ctx, victim.Instance); err != nil {
		return rebuildTimes{}, fmt.Errorf("deleting %s's container %s: %w", victim.Name, victim.Instance, err)
	}
	start := time.Now()
	var replaced, known time.Time
	deadline = start.Add(5 * time.Minute)
	for {
		s := iw.get(victim.Instance)
		if replaced.IsZero() && s.created.After(start) && !s.addressed.IsZero() {
			replaced = s.addressed
		}
		if !replaced.IsZero() && known.IsZero() && probe.allKnow(ctx, memberAddresses(iw, names), s.address, redisPort) {
			known = time.Now()
		}
		r := fw.rebuild(f.Name)
		if !replaced.IsZero() && !known.IsZero() && !r.linked.IsZero() && !r.ready.IsZero() {
			return rebuildTimes{deletion: start.Sub(deleting), replaced: replaced.Sub(start), linked: r.linked.Sub(start), known: known.Sub(start), ready: r.ready.Sub(start)}, nil
		}
		if time.Now().After(deadline) {
			return rebuildTimes{}, fmt.Errorf("%s: rebuild of %s not complete 5 minutes after its container was deleted (replaced at %v, known at %v, status: loss seen %v, linked %v, Ready %v; %s)",
				f.Name, victim.Name, replaced, known, r.lossSeen, r.linked, r.ready, readyReason(fw.current(f.Name)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memberAddresses are the current addresses of the named containers ("" for
// one without an address now).
func memberAddresses(iw *instanceWatch, names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, iw.get(n).address)
	}
	return out
}

// sentinelProbe asks the members' sentinels, as the operator's admin user,
// which replicas they know.
type sentinelProbe struct {
	creds   redisadmin.Credentials
	port    int
	master  string
	clients map[string]*redis.SentinelClient // by address
}

// allKnow says whether the sentinel at every address lists the replica at
// replicaAddr:port in good standing (false while an address is unknown).
func (p *sentinelProbe) allKnow(ctx context.Context, sentinels []string, replicaAddr string, port int) bool {
	if replicaAddr == "" {
		return false
	}
	for _, addr := range sentinels {
		if addr == "" {
			return false
		}
		c := p.clients[addr]
		if c == nil {
			c = redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(addr, strconv.Itoa(p.port)), Username: p.creds.Username, Password: p.creds.Password,
				DisableIdentity: true, DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, MaxRetries: -1})
			p.clients[addr] = c
		}
		replicas, err := c.Replicas(ctx, p.master).Result()
		if err != nil || !replicaInGoodStanding(replicas, replicaAddr, port) {
			return false
		}
	}
	return true
}

func (p *sentinelProbe) close() {
	for _, c := range p.clients {
		_ = c.Close()
	}
}

// replicaInGoodStanding says whether a SENTINEL REPLICAS answer lists the
// replica at ip:port without a flag that says it is down or unreachable.
func replicaInGoodStanding(replicas []map[string]string, ip string, port int) bool {
	for _, r := range replicas {
		if r["ip"] != ip || r["port"] != strconv.Itoa(port) {
			continue
		}
		for _, flag := range strings.Split(r["flags"], ",") {
			if flag == "s_down" || flag == "o_down" || flag == "disconnected" {
				return false
			}
		}
		return true
	}
	return false
}
