package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// BenchmarkImageRoll changes a Ready formation's image alias (to a second
// alias of the lab image, so every container is replaced) while a writer
// writes through the connection Secret's client (SET + WAIT 1), and reports
// the longest gap between two successful writes (target <= 2 s), the
// acknowledged writes lost (target 0), the master switches (target 1) and
// the roll's duration.
func BenchmarkImageRoll(b *testing.B) {
	needStack(b)
	ns := benchNamespace(b, "bench-roll")
	deps, _ := realDeps(b)
	startManager(b, []string{ns}, defaultOptions(), deps)
	tr := newTracker(b, true)
	f := newFormation(ns, ns+"-r")
	tr.create(b, f)
	if _, err := waitReady(ns, []*redisv1alpha1.RedisSentinelFormation{f}, 100*time.Millisecond, 10*time.Minute); err != nil {
		b.Fatal(err)
	}
	alias := secondAlias(b)
	r := rollUnderWriter(b, f, "image roll", func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Incus.Image = alias }, nil)
	b.ReportMetric(r.gap.Seconds(), "roll-write-gap-s")
	b.ReportMetric(float64(r.lost), "roll-acked-lost")
	b.ReportMetric(float64(r.switches), "roll-master-switches")
	b.ReportMetric(r.took.Seconds(), "roll-duration-s")
}

// rollFigures are what a change that replaces every member did to a writer.
type rollFigures struct {
	gap, took time.Duration
	// lost: acknowledged writes missing when read back; switches: the
	// change's master switches (status.failovers).
	lost     int
	switches int64
}

// rollUnderWriter makes a change that replaces every container of the
// Ready formation f (change edits its spec) while a writer writes through
// the connection Secret's client (SET + WAIT 1), and waits until every
// container was replaced and the formation is Ready at the new generation
// (and done, when given, holds for it): the longest gap between two
// successful writes from the change on, the acknowledged writes lost, the
// master switches and the time the change took. what names the change in
// the log and errors.
func rollUnderWriter(b *testing.B, f *redisv1alpha1.RedisSentinelFormation, what string, change func(*redisv1alpha1.RedisSentinelFormation), done func(*redisv1alpha1.RedisSentinelFormation) bool) rollFigures {
	b.Helper()
	ctx := context.Background()
	w, err := harness.StartWriter(ctx, k8s, f, harness.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err != nil {
		b.Fatal(err)
	}
	failovers, gen := cur.Status.Failovers, cur.Generation
	created := map[string]time.Time{}
	for _, m := range cur.Status.Members {
		inst, err := incusSrv.GetInstance(ctx, m.Instance)
		if err != nil {
			b.Fatal(err)
		}
		created[m.Instance] = inst.CreatedAt
	}
	w.ResetGap()
	start := time.Now()
	patch := client.MergeFrom(cur.DeepCopy())
	change(cur)
	if err := k8s.Patch(ctx, cur, patch); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Minute)
	var seen conditionLog
	for !rolled(ctx, f, gen, created, done) {
		if time.Now().After(deadline) {
			b.Fatalf("the %s did not finish within 15 minutes (%s); log:\n%s", what, seen, logs.tail(30))
		}
		seen.observe(ctx, f, start)
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(start)
	st := w.Stop()
	lost, err := w.Lost(ctx, k8s, f)
	if err != nil {
		b.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err != nil {
		b.Fatal(err)
	}
	r := rollFigures{gap: st.LongestGap, took: took, lost: len(lost), switches: cur.Status.Failovers - failovers}
	b.Logf("%s: %s, longest write gap %s, %d writes (%d acknowledged, %d lost), %d master switches; %s",
		what, took.Round(100*time.Millisecond), st.LongestGap.Round(time.Millisecond), st.Attempted, st.Acknowledged, r.lost, r.switches, seen)
	return r
}

// conditionLog records the Degraded condition's reasons and messages a
// formation showed during a change, each with when it was first seen, so
// that a change that took unusually long says why.
type conditionLog struct {
	seen    map[string]bool
	entries []string
}

func (c *conditionLog) observe(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, since time.Time) {
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if k8s.Get(ctx, client.ObjectKeyFromObject(f), cur) != nil {
		return
	}
	cond := meta.FindStatusCondition(cur.Status.Conditions, redisv1alpha1.ConditionDegraded)
	if cond == nil || cond.Status != metav1.ConditionTrue {
		return
	}
	key := cond.Reason + ": " + cond.Message
	if len(key) > 200 {
		key = key[:200] + "..."
	}
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if !c.seen[key] {
		c.seen[key] = true
		c.entries = append(c.entries, fmt.Sprintf("+%.1fs %s", time.Since(since).Seconds(), key))
	}
}

func (c conditionLog) String() string {
	if len(c.entries) == 0 {
		return "never Degraded"
	}
	return "Degraded: " + strings.Join(c.entries, "; ")
}

// rolled: every container was replaced and the formation is Ready at the
// new generation (and done, when given, holds).
func rolled(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, gen int64, created map[string]time.Time, done func(*redisv1alpha1.RedisSentinelFormation) bool) bool {
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if k8s.Get(ctx, client.ObjectKeyFromObject(f), cur) != nil || cur.Generation == gen || cur.Status.ObservedGeneration != cur.Generation || !isReady(cur) {
		return false
	}
	if done != nil && !done(cur) {
		return false
	}
	for name, at := range created {
		inst, err := incusSrv.GetInstance(ctx, name)
		if err != nil || !inst.CreatedAt.After(at) {
			return false
		}
	}
	return true
}

// secondAlias creates another alias of the lab image for the run.
func secondAlias(b *testing.B) string {
	out, err := exec.Command("incus", "query", "/1.0/images/aliases/"+labImage).Output()
	if err != nil {
		b.Fatalf("reading the lab image alias: %v", err)
	}
	var target struct{ Target string }
	if err := json.Unmarshal(out, &target); err != nil || target.Target == "" {
		b.Fatalf("lab image alias target: %q %v", out, err)
	}
	alias := fmt.Sprintf("%s-roll-%s", labImage, uniqueName("x"))
	if out, err := exec.Command("incus", "image", "alias", "create", alias, target.Target).CombinedOutput(); err != nil {
		b.Fatalf("creating image alias: %v %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("incus", "image", "alias", "delete", alias).Run() })
	allowImage(b, alias)
	return alias
}

// allowImage adds alias to the images the lab's IncusHost allows, for the
// benchmark's duration: a host refuses any other image.
func allowImage(b *testing.B, alias string) {
	ctx := context.Background()
	host := &redisv1alpha1.IncusHost{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: testenv.LabHost}, host); err != nil {
		b.Fatalf("reading IncusHost %s: %v", testenv.LabHost, err)
	}
	patch := client.MergeFrom(host.DeepCopy())
	before := host.Spec.Allowed.Images
	host.Spec.Allowed.Images = append(append([]string(nil), before...), alias)
	if err := k8s.Patch(ctx, host, patch); err != nil {
		b.Fatalf("allowing image %s on IncusHost %s: %v", alias, testenv.LabHost, err)
	}
	b.Cleanup(func() {
		restore := client.MergeFrom(host.DeepCopy())
		host.Spec.Allowed.Images = before
		_ = k8s.Patch(ctx, host, restore)
	})
}
