package bench

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/passwords"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// rotationKind is one kind of password rotation.
type rotationKind struct {
	// tag names the metrics: rotation-<tag>-...
	tag string
	// creds are the credentials it rotates.
	creds []acl.Credential
	// secret is the user Secret whose value changes; "" for the internal
	// credentials, whose Secret is deleted.
	secret string
}

var rotationKinds = []rotationKind{
	{tag: "backend", creds: []acl.Credential{acl.BackendPassword}, secret: "redis-pw"},
	{tag: "sentinel", creds: []acl.Credential{acl.BackendSentinelPassword}, secret: "sentinel-pw"},
	{tag: "internal", creds: acl.Internal},
}

// BenchmarkPasswordRotation rotates, one after the other on one Ready
// formation (in-process manager, --password-grace BENCH_ROTATION_GRACE,
// 30 s), the backend user's password on the redis-servers (the
// passwordSecretRef Secret changes), its password on the sentinels
// (sentinelPasswordSecretRef) and the operator's own users' passwords (the
// internal credentials Secret is deleted), while two writers send SET +
// WAIT 1 every 20 ms through a Sentinel FailoverClient built from the
// connection Secret:
//
//   - the reloading writer reads the connection Secret every
//     BENCH_ROTATION_RELOAD (5 s, well within the grace) and switches to a
//     new client when it changed: its write errors (target 0) and longest
//     gap between two successful writes are the figures;
//   - the stale writer never reloads: it shows that the previous password
//     is really retired after the grace (its errors after retireAt).
//
// Both clients recycle their connections every second (ConnMaxLifetime, for
// the data connections and the connection to the sentinel), so they log in
// again all the time: with pooled connections alone, a connection made
// before the rotation would keep working and prove nothing. Each rotation
// is timed from the change until status.passwordRotation is gone and the
// password state Secret records no previous password; the writers run on
// for two reload periods after that. Also reported: acknowledged writes
// lost (read back through a fresh client) and failovers (status.failovers),
// both with target 0.
func BenchmarkPasswordRotation(b *testing.B) {
	needStack(b)
	grace := envDuration("BENCH_ROTATION_GRACE", 30*time.Second)
	reload := envDuration("BENCH_ROTATION_RELOAD", 5*time.Second)
	if reload >= grace {
		b.Fatalf("BENCH_ROTATION_RELOAD %s is not within BENCH_ROTATION_GRACE %s", reload, grace)
	}
	ns := benchNamespace(b, "benchlp-rot")
	deps, _ := realDeps(b)
	opts := defaultOptions()
	opts.PasswordGrace = grace
	startManager(b, []string{ns}, opts, deps)
	tr := newTracker(b, true)
	f := newFormation(ns, ns)
	tr.create(b, f)
	if _, err := waitReady(ns, []*redisv1alpha1.RedisSentinelFormation{f}, 250*time.Millisecond, 10*time.Minute); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(grace.Seconds(), "rotation-grace-s")
	b.ReportMetric(reload.Seconds(), "rotation-reload-s")
	for _, kind := range rotationKinds {
		res, err := rotate(f, kind, reload, grace)
		if err != nil {
			b.Fatalf("rotation of the %s password(s): %v\nlog tail:\n%s", kind.tag, err, logs.tail(30))
		}
		b.Logf("rotation of the %s password(s): took %s (connection Secret new after %s, previous password recorded beside the new one for %s); reloading writer: %d writes, %d errors (%s), longest gap %s, %d acknowledged, %d lost, %d reloads; stale writer: %d errors after retireAt (%d before), %s; failovers %d",
			kind.tag, res.took.Round(100*time.Millisecond), res.connection.Round(100*time.Millisecond), res.previousAccepted.Round(100*time.Millisecond),
			res.reloading.Attempted, res.reloading.Failed, res.reloading.ErrorKinds(), res.reloading.LongestGap.Round(time.Millisecond),
			res.reloading.Acknowledged, res.lost, res.reloading.Reloads, res.staleAfter, res.staleBefore, res.stale.ErrorKinds(), res.failovers)
		p := "rotation-" + kind.tag + "-"
		b.ReportMetric(float64(res.reloading.Failed), p+"write-errors")
		b.ReportMetric(float64(res.reloading.Attempted), p+"writes")
		b.ReportMetric(res.reloading.LongestGap.Seconds(), p+"write-gap-s")
		b.ReportMetric(float64(res.lost), p+"acked-lost")
		b.ReportMetric(float64(res.failovers), p+"failovers")
		b.ReportMetric(res.took.Seconds(), p+"duration-s")
		b.ReportMetric(float64(res.staleAfter), p+"stale-errors")
		b.ReportMetric(res.previousAccepted.Seconds(), p+"previous-accepted-s")
		if kind.secret != "" {
			b.ReportMetric(res.connection.Seconds(), p+"connection-s")
		}
	}
}

// rotationResult is what one rotation measured.
type rotationResult struct {
	took, connection time.Duration
	// previousAccepted is how long the state Secret recorded the previous
	// password beside the new one (polled every 100 ms): the grace as
	// the members applied it.
	previousAccepted        time.Duration
	reloading, stale        harness.WriterStats
	staleBefore, staleAfter int
	lost                    int
	failovers               int64
}

// rotate runs one rotation of kind on f under the two writers.
func rotate(f *redisv1alpha1.RedisSentinelFormation, kind rotationKind, reload, grace time.Duration) (rotationResult, error) {
	ctx := context.Background()
	var res rotationResult
	before := &redisv1alpha1.RedisSentinelFormation{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), before); err != nil {
		return res, err
	}
	state0, err := readSecret(f.Namespace, f.Name+"-password-state")
	if err != nil {
		return res, err
	}
	// Connections recycled every second: each writer logs in again every
	// second to a sentinel and to the master.
	reloading, err := harness.StartWriter(ctx, k8s, f, harness.WriterOptions{Prefix: "rot:" + kind.tag + ":r:", Reload: reload, ConnMaxLifetime: time.Second})
	if err != nil {
		return res, err
	}
	defer reloading.Stop()
	stale, err := harness.StartWriter(ctx, k8s, f, harness.WriterOptions{Prefix: "rot:" + kind.tag + ":s:", ConnMaxLifetime: time.Second})
	if err != nil {
		return res, err
	}
	defer stale.Stop()
	time.Sleep(3 * time.Second) // both write and recycle connections
	reloading.Reset()
	stale.Reset()

	start := time.Now()
	var newPW string
	if kind.secret != "" {
		if newPW, err = passwords.Generate(); err != nil {
			return res, err
		}
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: kind.secret}, s); err != nil {
			return res, err
		}
		s.Data["password"] = []byte(newPW)
		if err := k8s.Update(ctx, s); err != nil {
			return res, err
		}
	} else {
		s := &corev1.Secret{}
		s.Namespace, s.Name = f.Namespace, f.Name+"-internal-credentials"
		if err := k8s.Delete(ctx, s); err != nil {
			return res, err
		}
	}

	// Until the rotation is over: the state Secret has new passwords for
	// the rotated credentials and no previous one, and status no rotation.
	var retireAt, recordedAt time.Time
	deadline := start.Add(grace + 3*time.Minute)
	for {
		if res.connection == 0 && kind.secret != "" {
			if conn, err := readSecret(f.Namespace, f.Name+"-connection"); err == nil && connectionHas(conn, kind, newPW) {
				res.connection = time.Since(start)
			}
		}
		cur := &redisv1alpha1.RedisSentinelFormation{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), cur); err == nil && cur.Status.PasswordRotation != nil {
			retireAt = cur.Status.PasswordRotation.RetireAt.Time
		}
		state, err := readSecret(f.Namespace, f.Name+"-password-state")
		if err == nil && recordedAt.IsZero() && hasPrevious(state, kind) {
			recordedAt = time.Now()
		}
		if err == nil && !recordedAt.IsZero() && res.previousAccepted == 0 && rotated(state0, state, kind) {
			res.previousAccepted = time.Since(recordedAt)
		}
		if err == nil && !retireAt.IsZero() && cur.Status.PasswordRotation == nil && rotated(state0, state, kind) {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("not over %s after the change (retireAt seen: %v, status.passwordRotation %+v)", time.Since(start).Round(time.Second), !retireAt.IsZero(), cur.Status.PasswordRotation)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.took = time.Since(start)
	time.Sleep(2 * reload)
	res.reloading, res.stale = reloading.Stop(), stale.Stop()
	res.staleBefore, res.staleAfter = stale.ErrorsAround(retireAt)
	lost, err := harness.LostKeys(ctx, k8s, f, append(reloading.Acknowledged(), stale.Acknowledged()...), nil)
	if err != nil {
		return res, err
	}
	res.lost = len(lost)
	after := &redisv1alpha1.RedisSentinelFormation{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(f), after); err != nil {
		return res, err
	}
	res.failovers = after.Status.Failovers - before.Status.Failovers
	if !isReady(after) {
		return res, fmt.Errorf("the formation is not Ready after the rotation: phase %s", after.Status.Phase)
	}
	return res, nil
}

// connectionHas: the connection Secret hands out pw for the kind's
// credential.
func connectionHas(data map[string][]byte, kind rotationKind, pw string) bool {
	cfg, err := configOf(data)
	if err != nil {
		return false
	}
	if kind.creds[0] == acl.BackendSentinelPassword {
		return cfg.SentinelPassword == pw
	}
	return cfg.Password == pw
}

// hasPrevious: the state Secret records a previous password of every
// rotated credential.
func hasPrevious(state map[string][]byte, kind rotationKind) bool {
	for _, c := range kind.creds {
		if len(state[string(c)+".previous"]) == 0 {
			return false
		}
	}
	return true
}

// rotated: every rotated credential has a new current password and none
// has a previous one.
func rotated(before, now map[string][]byte, kind rotationKind) bool {
	for k := range now {
		if strings.HasSuffix(k, ".previous") {
			return false
		}
	}
	for _, c := range kind.creds {
		if len(now[string(c)]) == 0 || bytes.Equal(before[string(c)], now[string(c)]) {
			return false
		}
	}
	return true
}

func readSecret(ns, name string) (map[string][]byte, error) {
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		return nil, err
	}
	return s.Data, nil
}

func configOf(data map[string][]byte) (config.Redis, error) {
	m := make(map[string]string, len(data))
	for k, v := range data {
		m[k] = string(v)
	}
	return config.FromMap(m)
}
