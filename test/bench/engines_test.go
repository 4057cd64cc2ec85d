package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// engineVariant is one of BenchmarkEngines's two engines.
type engineVariant struct {
	engine redisv1alpha1.Engine // also the tag in the metric names
	ns     string
	fw     *formationWatch
}

// formation is a formation of the variant's engine with the defaults
// (spec.incus.image unset: the engine's lab image).
func (v engineVariant) formation(suffix string) *redisv1alpha1.RedisSentinelFormation {
	f := newFormation(v.ns, v.ns+"-"+suffix)
	f.Spec.Engine = v.engine
	return f
}

// BenchmarkEngines runs Redis 7 and Valkey 8 side by side under one
// manager, each engine's formations with the defaults (3 members,
// down-after 5000 ms, spec.incus.image unset so that each engine uses its
// lab image) in a namespace of its own:
//   - apply -> Ready (applyAll, as BenchmarkApplyToReady times it: from
//     the create until status says Ready), BENCH_ENGINE_APPLY (3)
//     creations per engine, the engines alternating (which goes first
//     too), each formation deleted and its containers gone before the
//     next; one unmeasured creation per engine first, so that the first
//     launch of each image on the pool is not timed. Medians per engine
//     and Valkey - Redis.
//   - kill -> status.master changes on the fast path (alternatingDrills,
//     as BenchmarkTLS), BENCH_ENGINE_DRILLS (5) drills per engine, the
//     engines alternating; medians and Valkey - Redis.
//   - the live migration: BENCH_ENGINE_MIGRATIONS (3) times, a fresh Ready
//     Redis formation (in a third namespace) has spec.engine changed to
//     valkey under a SET + WAIT 1 writer (rollUnderWriter, as
//     BenchmarkImageRoll), until every member's status.members[].engine
//     is valkey, every container was replaced and the formation is Ready
//     at the new generation: the worst longest write gap (target <= 2 s),
//     the acknowledged writes lost (target 0), the master switches of each
//     migration (target 1) and the median duration.
func BenchmarkEngines(b *testing.B) {
	needStack(b)
	ctx := context.Background()
	applies, drills, migrations := envInt("BENCH_ENGINE_APPLY", 3), envInt("BENCH_ENGINE_DRILLS", 5), envInt("BENCH_ENGINE_MIGRATIONS", 3)
	valkeyImage := engine.MustOf(engine.Valkey).DefaultImage
	if _, ok, err := incusSrv.ImageProperties(ctx, valkeyImage); err != nil || !ok {
		testenv.Check(b, "incusd with the Valkey lab image", &testenv.UnavailableError{Err: fmt.Errorf("image alias %s missing (run `make lab-host`): %v", valkeyImage, err)})
	}

	variants := []engineVariant{
		{engine: redisv1alpha1.EngineRedis, ns: benchNamespace(b, "bench-redis")},
		{engine: redisv1alpha1.EngineValkey, ns: benchNamespace(b, "bench-valkey")},
	}
	nsMigrate := benchNamespace(b, "bench-migrate")
	deps, _ := realDeps(b)
	startManager(b, []string{variants[0].ns, variants[1].ns, nsMigrate}, defaultOptions(), deps)
	tr := newTracker(b, true)
	iw := watchInstances(b)
	for i := range variants {
		variants[i].fw = watchFormations(b, variants[i].ns)
	}
	start := time.Now()

	// apply -> Ready.
	apply := func(v engineVariant, suffix string) bringUp {
		f := v.formation(suffix)
		ups, err := applyAll(tr, v.fw, iw, []*redisv1alpha1.RedisSentinelFormation{f}, 10*time.Minute)
		if err != nil {
			b.Fatalf("%s: %v\nlog tail:\n%s", v.engine, err, logs.tail(20))
		}
		if err := removeFormations(tr, iw, f); err != nil {
			b.Fatal(err)
		}
		return ups[0]
	}
	for _, v := range variants { // warm-up: each image's first launch on the pool
		u := apply(v, "w")
		b.Logf("%s warm-up: apply -> Ready %s: %s", v.engine, u.since(phaseReady).Round(10*time.Millisecond), u)
	}
	toReady := make([][]time.Duration, len(variants))
	for n := range applies {
		for k := range variants {
			i := (k + n) % len(variants)
			u := apply(variants[i], fmt.Sprintf("a%d", n+1))
			b.Logf("%s apply %d: apply -> Ready %s: %s", variants[i].engine, n+1, u.since(phaseReady).Round(10*time.Millisecond), u)
			toReady[i] = append(toReady[i], u.since(phaseReady))
		}
	}
	b.ReportMetric(float64(applies), "engines-apply-runs")
	for i, v := range variants {
		b.ReportMetric(median(toReady[i]).Seconds(), fmt.Sprintf("engines-apply-%s-median-s", v.engine))
		b.ReportMetric(maxOf(toReady[i]).Seconds(), fmt.Sprintf("engines-apply-%s-max-s", v.engine))
	}
	b.ReportMetric((median(toReady[1]) - median(toReady[0])).Seconds(), "engines-apply-diff-s")
	b.Logf("apply -> Ready took %s", time.Since(start).Round(time.Second))

	// kill -> status, fast path.
	t0 := time.Now()
	var fs []*redisv1alpha1.RedisSentinelFormation
	var tags []string
	for _, v := range variants {
		f := v.formation("k")
		tr.create(b, f)
		fs, tags = append(fs, f), append(tags, string(v.engine))
	}
	for _, f := range fs {
		if _, err := waitReady(f.Namespace, []*redisv1alpha1.RedisSentinelFormation{f}, 250*time.Millisecond, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	toStatus := alternatingDrills(b, tags, fs, drills, failoverPaths[0])
	b.ReportMetric(float64(drills), "engines-drills")
	for i, tag := range tags {
		b.ReportMetric(median(toStatus[i]).Seconds(), "engines-kill-status-"+tag+"-median-s")
		b.ReportMetric(maxOf(toStatus[i]).Seconds(), "engines-kill-status-"+tag+"-max-s")
	}
	b.ReportMetric((median(toStatus[1]) - median(toStatus[0])).Seconds(), "engines-kill-status-diff-s")
	if err := removeFormations(tr, iw, fs...); err != nil {
		b.Fatal(err)
	}
	b.Logf("the drills took %s", time.Since(t0).Round(time.Second))

	// The migration, each on a fresh Redis formation alone.
	var worstGap time.Duration
	var took []time.Duration
	lost := 0
	minSwitches, maxSwitches := int64(-1), int64(0)
	for n := range migrations {
		f := newFormation(nsMigrate, fmt.Sprintf("%s-m%d", nsMigrate, n+1))
		f.Spec.Engine = redisv1alpha1.EngineRedis
		tr.create(b, f)
		if _, err := waitReady(nsMigrate, []*redisv1alpha1.RedisSentinelFormation{f}, 100*time.Millisecond, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
		r := rollUnderWriter(b, f, fmt.Sprintf("migration %d (redis -> valkey)", n+1),
			func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Engine = redisv1alpha1.EngineValkey },
			func(cur *redisv1alpha1.RedisSentinelFormation) bool {
				return allOnEngine(cur, redisv1alpha1.EngineValkey)
			})
		if r.gap > 2*time.Second || r.lost > 0 || r.switches != 1 || os.Getenv("BENCH_DEBUG") != "" {
			b.Logf("migration %d: gap %s, %d lost, %d switches; log tail:\n%s", n+1, r.gap.Round(time.Millisecond), r.lost, r.switches, logs.tail(300))
		}
		worstGap, lost = max(worstGap, r.gap), lost+r.lost
		took = append(took, r.took)
		if minSwitches < 0 || r.switches < minSwitches {
			minSwitches = r.switches
		}
		maxSwitches = max(maxSwitches, r.switches)
		if err := removeFormations(tr, iw, f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(migrations), "engines-migrations")
	b.ReportMetric(worstGap.Seconds(), "engines-migration-write-gap-s")
	b.ReportMetric(float64(lost), "engines-migration-acked-lost")
	b.ReportMetric(float64(maxSwitches), "engines-migration-master-switches")
	b.ReportMetric(float64(minSwitches), "engines-migration-master-switches-min")
	b.ReportMetric(median(took).Seconds(), "engines-migration-duration-s")
	b.ReportMetric(maxOf(took).Seconds(), "engines-migration-duration-max-s")
	b.Logf("BenchmarkEngines took %s", time.Since(start).Round(time.Second))
}

// allOnEngine: status says every member's container runs e.
func allOnEngine(f *redisv1alpha1.RedisSentinelFormation, e redisv1alpha1.Engine) bool {
	if len(f.Status.Members) != int(f.Spec.Members) {
		return false
	}
	for _, m := range f.Status.Members {
		if m.Engine != e {
			return false
		}
	}
	return true
}
