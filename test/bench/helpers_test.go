package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
)

// The backend user's passwords of every bench formation (they pass the
// production policy, the default environment) and its name.
const (
	redisPassword    = "bench-r-Q7v2Lw9xK3pZ8mT4"
	sentinelPassword = "bench-s-H5n8Rc2Vy6jB1dF9"
	backendUser      = acl.DefaultBackendUser
)

// keyFormationUID is the ownership key the operator puts on its instances.
const keyFormationUID = "user.rsf.formation-uid"

// uniqueName is prefix plus a random suffix no other run uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%04x", prefix, rand.IntN(0x10000))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// defaultOptions are the operator's flag defaults (what bin/manager runs).
func defaultOptions() controllers.Options {
	var o controllers.Options
	fs := flag.NewFlagSet("defaults", flag.ContinueOnError)
	o.BindFlags(fs)
	_ = fs.Parse(nil)
	return o
}

// benchNamespace creates a namespace with the two password Secrets every
// formation in it uses. Namespaces are not deleted: envtest has no
// namespace controller, and the API server goes away with the run.
func benchNamespace(b *testing.B, prefix string) string {
	b.Helper()
	ctx := context.Background()
	ns := uniqueName(prefix)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}
	for name, value := range map[string]string{"redis-pw": redisPassword, "sentinel-pw": sentinelPassword} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"password": value}}
		if err := k8s.Create(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	return ns
}

// newFormation is a formation with the defaults (3 members, down-after
// 5000 ms) reading the namespace's password Secrets.
func newFormation(ns, name string) *redisv1alpha1.RedisSentinelFormation {
	f := &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	f.Spec.Auth.PasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "redis-pw", Key: "password"}
	f.Spec.Auth.SentinelPasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "sentinel-pw", Key: "password"}
	return f
}

// tracker remembers the formations a benchmark created so that cleanup
// deletes them while their manager still runs, and then removes any
// container of theirs that is left (by their UID, never anything else).
type tracker struct {
	mu  sync.Mutex
	all []*redisv1alpha1.RedisSentinelFormation
	// real: the formations have real Incus containers.
	real bool
}

// newTracker registers the cleanup; call it after the manager started so
// that the deletions run before the manager stops.
func newTracker(b *testing.B, real bool) *tracker {
	tr := &tracker{real: real}
	b.Cleanup(func() {
		tr.mu.Lock()
		all := slices.Clone(tr.all)
		tr.mu.Unlock()
		if err := deleteAndWait(all, real, 10*time.Minute); err != nil {
			b.Errorf("cleanup: %v", err)
		}
		if real {
			removeLeftoverInstances(b, all)
		}
	})
	return tr
}

func (tr *tracker) create(b *testing.B, f *redisv1alpha1.RedisSentinelFormation) {
	b.Helper()
	if err := tr.tryCreate(f); err != nil {
		b.Fatal(err)
	}
}

// tryCreate is create for other goroutines than the benchmark's.
func (tr *tracker) tryCreate(f *redisv1alpha1.RedisSentinelFormation) error {
	if err := k8s.Create(context.Background(), f); err != nil {
		return fmt.Errorf("creating formation %s: %w", f.Name, err)
	}
	tr.mu.Lock()
	tr.all = append(tr.all, f)
	tr.mu.Unlock()
	return nil
}

// forget drops formations already deleted.
func (tr *tracker) forget(fs ...*redisv1alpha1.RedisSentinelFormation) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.all = slices.DeleteFunc(tr.all, func(f *redisv1alpha1.RedisSentinelFormation) bool { return slices.Contains(fs, f) })
}

// deleteAndWait deletes formations and waits until they are gone and, for
// real ones, until no container carries their UID.
func deleteAndWait(fs []*redisv1alpha1.RedisSentinelFormation, real bool, timeout time.Duration) error {
	ctx := context.Background()
	for _, f := range fs {
		if err := k8s.Delete(ctx, f); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %s: %w", f.Name, err)
		}
	}
	deadline := time.Now().Add(timeout)
	for _, f := range fs {
		for {
			err := k8s.Get(ctx, client.ObjectKeyFromObject(f), &redisv1alpha1.RedisSentinelFormation{})
			gone := apierrors.IsNotFound(err)
			if gone && real {
				owned, lerr := incusSrv.ListInstances(ctx, keyFormationUID, string(f.UID))
				gone = lerr == nil && len(owned) == 0
			}
			if gone {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("formation %s or its instances still present %s after deletion; log tail:\n%s", f.Name, timeout, logs.tail(20))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// removeLeftoverInstances deletes containers the operator did not (e.g.
// the manager stopped early), found by the formations' UIDs.
func removeLeftoverInstances(b *testing.B, fs []*redisv1alpha1.RedisSentinelFormation) {
	ctx := context.Background()
	for _, f := range fs {
		if f.UID == "" {
			continue
		}
		owned, err := incusSrv.ListInstances(ctx, keyFormationUID, string(f.UID))
		if err != nil {
			b.Logf("listing instances of %s: %v", f.Name, err)
			continue
		}
		for _, inst := range owned {
			b.Logf("removing leftover instance %s", inst.Name)
			_ = incusSrv.DeleteInstance(ctx, inst.Name)
		}
	}
}

// startManager runs the controller in-process, watching only namespaces,
// until the returned stop is called (also registered as cleanup).
func startManager(b *testing.B, namespaces []string, opts controllers.Options, deps controllers.Dependencies) (stop func()) {
	b.Helper()
	nsConfig := map[string]cache.Config{}
	for _, ns := range namespaces {
		nsConfig[ns] = cache.Config{}
	}
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: nsConfig},
		// Every benchmark starts its own manager with the same controller.
		Controller: ctrlconfig.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		b.Fatal(err)
	}
	if deps.Metrics == nil {
		deps.Metrics = metrics.NewOperator(prometheus.NewRegistry())
	}
	if err := controllers.SetupWithManager(mgr, opts, deps); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		cancel()
		b.Fatal("manager cache did not sync")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	b.Cleanup(stop)
	return stop
}

func isReady(f *redisv1alpha1.RedisSentinelFormation) bool {
	return f.Status.Phase == redisv1alpha1.PhaseReady && meta.IsStatusConditionTrue(f.Status.Conditions, redisv1alpha1.ConditionReady)
}

// waitReady polls the namespace every interval until every formation is
// Ready and returns when each was first seen Ready.
func waitReady(ns string, fs []*redisv1alpha1.RedisSentinelFormation, interval, timeout time.Duration) (map[types.NamespacedName]time.Time, error) {
	ctx := context.Background()
	want := map[types.NamespacedName]bool{}
	for _, f := range fs {
		want[client.ObjectKeyFromObject(f)] = true
	}
	seen := map[types.NamespacedName]time.Time{}
	deadline := time.Now().Add(timeout)
	for {
		var list redisv1alpha1.RedisSentinelFormationList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return seen, err
		}
		now := time.Now()
		var notReady []string
		for i := range list.Items {
			f := &list.Items[i]
			key := client.ObjectKeyFromObject(f)
			if !want[key] {
				continue
			}
			if _, ok := seen[key]; !ok {
				if isReady(f) {
					seen[key] = now
				} else if len(notReady) < 3 {
					c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionReady)
					msg := "no Ready condition"
					if c != nil {
						msg = c.Reason + ": " + c.Message
					}
					notReady = append(notReady, fmt.Sprintf("%s (phase %s; %s)", f.Name, f.Status.Phase, msg))
				}
			}
		}
		if len(seen) == len(want) {
			return seen, nil
		}
		if now.After(deadline) {
			return seen, fmt.Errorf("%d of %d formations Ready after %s; e.g. %s\nlog tail:\n%s",
				len(seen), len(want), timeout, strings.Join(notReady, "; "), logs.tail(20))
		}
		time.Sleep(interval)
	}
}

// counterSum sums the counters called names in reg whose "subsystem"
// label is subsystem.
func counterSum(reg prometheus.Gatherer, subsystem string, names ...string) float64 {
	families, err := reg.Gather()
	if err != nil {
		return 0
	}
	var total float64
	for _, mf := range families {
		if !slices.Contains(names, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "subsystem" && l.GetValue() == subsystem {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// histogramCount sums the sample counts of the histograms called name.
func histogramCount(reg prometheus.Gatherer, name string) float64 {
	families, err := reg.Gather()
	if err != nil {
		return 0
	}
	var total float64
	for _, mf := range families {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// nopWatcher stands in for the Sentinel event watcher on fake backends.
// nopCanary stands in for the canary on the fake backend: the fake's
// addresses exist nowhere, so nothing may dial them.
type nopCanary struct{}

func (nopCanary) Probe(context.Context, string, map[string][]byte) (time.Duration, error) {
	return 0, nil
}
func (nopCanary) Forget(string) {}

type nopWatcher struct{}

func (nopWatcher) Watch(client.ObjectKey, redisadmin.Credentials, []sentinel.Target) {}
func (nopWatcher) Forget(client.ObjectKey)                                           {}
func (nopWatcher) Events(client.ObjectKey) []sentinel.Event                          { return nil }
func (nopWatcher) Switches(client.ObjectKey) []sentinel.Switch                       { return nil }

var _ controllers.SentinelWatcher = nopWatcher{}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func maxOf(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clkTck = 100

// cpuTime is a process's user + system CPU time so far.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(string(data))
}

func parseStat(stat string) (time.Duration, error) {
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/<pid>/stat")
	}
	fields := strings.Fields(stat[i+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// memory is a process's resident set now and at its peak, in bytes.
type memory struct{ RSS, HWM int64 }

func processMemory(pid string) (memory, error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return memory{}, err
	}
	return parseStatus(data)
}

func parseStatus(data []byte) (memory, error) {
	var m memory
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			continue
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.HWM = kb << 10
		}
	}
	if m.RSS == 0 {
		return m, errors.New("no VmRSS in /proc/<pid>/status")
	}
	return m, nil
}

// rssSampler records the largest VmRSS of a process, sampled every period.
type rssSampler struct {
	mu   sync.Mutex
	max  int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid string, period time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if m, err := processMemory(pid); err == nil {
				s.mu.Lock()
				s.max = max(s.max, m.RSS)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the largest VmRSS seen.
func (s *rssSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

const mib = 1 << 20

// ring keeps the latest lines the managers logged, to show on a failure
// (a bounded buffer, so logging does not grow the memory being measured).
type ring struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newRing(n int) *ring { return &ring{lines: make([]string, n)} }

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		r.lines[r.next] = line
		r.next = (r.next + 1) % len(r.lines)
		r.full = r.full || r.next == 0
	}
	return len(p), nil
}

func (r *ring) Sync() error { return nil }

func (r *ring) tail(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	return strings.Join(all[max(0, len(all)-n):], "\n")
}

func (r *ring) core() zapcore.Core {
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		TimeKey: "ts", LevelKey: "level", MessageKey: "msg", NameKey: "logger",
		EncodeTime: zapcore.ISO8601TimeEncoder, EncodeLevel: zapcore.LowercaseLevelEncoder,
	})
	return zapcore.NewCore(enc, zapcore.AddSync(r), zapcore.InfoLevel)
}
