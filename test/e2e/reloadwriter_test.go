package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// reloadingWriter is a backend as it runs in a pod that mounts the
// connection Secret: it writes through the FailoverClient built from the
// Secret (SET + WAIT 1, remembering what a replica acknowledged) and picks
// up a changed Secret the way a mounted Secret is refreshed, by re-reading
// it every reloadEvery, and at once after an authentication error. A
// client that reloads within the rotation grace should see no error.
// (harness.Writer builds its client once.)
type reloadingWriter struct {
	f           *redisv1alpha1.RedisSentinelFormation
	reloadEvery time.Duration

	mu      sync.Mutex
	stats   harness.WriterStats
	reloads int
	errs    map[string]int // error messages (never carry passwords) -> count
	acked   []string
	lastOK  time.Time
	stop    chan struct{}
	done    chan struct{}
}

func startReloadingWriter(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, prefix string) *reloadingWriter {
	t.Helper()
	w := &reloadingWriter{f: f, reloadEvery: 2 * time.Second, errs: map[string]int{}, lastOK: time.Now(),
		stop: make(chan struct{}), done: make(chan struct{})}
	c, version, err := w.load("")
	if err != nil || c == nil {
		t.Fatalf("writer: client from the connection Secret: %v", err)
	}
	go w.run(c, version, prefix)
	t.Cleanup(func() { w.Stop() })
	return w
}

// load builds a client from the connection Secret unless its
// resourceVersion is still version (then it returns nil).
func (w *reloadingWriter) load(version string) (*redis.Client, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: w.f.Namespace, Name: w.f.Name + "-connection"}, s); err != nil {
		return nil, version, err
	}
	if s.ResourceVersion == version {
		return nil, version, nil
	}
	c, err := redisclient.FromSecretData(s.Data, redisclient.Options{})
	if err != nil {
		return nil, version, err
	}
	return c, s.ResourceVersion, nil
}

func (w *reloadingWriter) run(c *redis.Client, version, prefix string) {
	defer close(w.done)
	defer func() { _ = c.Close() }()
	lastLoad := time.Now()
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		err := w.write(c, fmt.Sprintf("%s%d", prefix, i))
		authErr := err != nil && (isWrongPass(err) || strings.Contains(err.Error(), "NOAUTH") || isRefused(err))
		if authErr || time.Since(lastLoad) >= w.reloadEvery {
			lastLoad = time.Now()
			if nc, nv, lerr := w.load(version); lerr == nil && nc != nil {
				_ = c.Close()
				c, version = nc, nv
				w.mu.Lock()
				w.reloads++
				w.mu.Unlock()
			}
		}
		pause := 20 * time.Millisecond
		if err != nil {
			pause = 100 * time.Millisecond
		}
		time.Sleep(pause)
	}
}

func (w *reloadingWriter) write(c *redis.Client, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	pipe := c.Pipeline()
	pipe.Set(ctx, key, key, 0)
	wait := pipe.Do(ctx, "WAIT", 1, 500)
	_, err := pipe.Exec(ctx)
	replicas, _ := wait.Int64()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Attempted++
	if err != nil {
		w.stats.Failed++
		w.errs[err.Error()]++
		return err
	}
	w.stats.OK++
	w.stats.LongestGap = max(w.stats.LongestGap, time.Since(w.lastOK))
	w.lastOK = time.Now()
	if replicas >= 1 {
		w.stats.Acknowledged++
		w.acked = append(w.acked, key)
	}
	return nil
}

// mark returns the counts so far and starts timing the longest gap afresh,
// so that each phase of a test is measured alone.
func (w *reloadingWriter) mark() harness.WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	w.stats.LongestGap, w.lastOK = 0, time.Now()
	return st
}

// Stop stops writing (again is a no-op) and returns the counts.
func (w *reloadingWriter) Stop() harness.WriterStats {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// errors describes the failed writes by message.
func (w *reloadingWriter) errors() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for _, msg := range slices.Sorted(maps.Keys(w.errs)) {
		parts = append(parts, fmt.Sprintf("%dx %q", w.errs[msg], msg))
	}
	return strings.Join(parts, "; ")
}

// phase logs what the writer saw since the last mark: writes, failures,
// acknowledgements and the longest gap without a successful write.
func (w *reloadingWriter) phase(t *testing.T, what string, before harness.WriterStats) harness.WriterStats {
	t.Helper()
	now := w.mark()
	w.mu.Lock()
	reloads := w.reloads
	w.mu.Unlock()
	t.Logf("%s: writer %d writes, %d failed, %d acknowledged, longest gap %s (%d Secret reloads so far)",
		what, now.Attempted-before.Attempted, now.Failed-before.Failed, now.Acknowledged-before.Acknowledged, now.LongestGap.Round(time.Millisecond), reloads)
	return now
}

// finish stops the writer and checks that every acknowledged write is
// still there, read back through a fresh client from the connection
// Secret.
func (w *reloadingWriter) finish(t *testing.T) harness.WriterStats {
	t.Helper()
	st := w.Stop()
	w.mu.Lock()
	acked := slices.Clone(w.acked)
	w.mu.Unlock()
	lost, err := harness.LostKeys(context.Background(), k8s, w.f, acked, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged writes lost, e.g. %v", len(lost), len(acked), lost[:min(5, len(lost))])
	}
	t.Logf("writer in total: %d writes, %d failed, %d acknowledged (WAIT 1), %d lost", st.Attempted, st.Failed, st.Acknowledged, len(lost))
	if st.Failed > 0 {
		t.Logf("failed writes: %s", w.errors())
	}
	return st
}
