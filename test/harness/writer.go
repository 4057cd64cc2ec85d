// Package harness holds what the real-stack test suites (e2e, chaos,
// benchmarks) share: a writer that records which writes a replica
// acknowledged, and a kubeconfig for the envtest API server.
package harness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
)

// Writer writes keys through the client backends use (built from the
// formation's connection Secret) and remembers every write a replica
// acknowledged (WAIT 1): those must never be lost.
type Writer struct {
	mu    sync.Mutex
	stats WriterStats
	acked []string
	// lastOK is the end of the last successful write.
	lastOK time.Time
	stop   chan struct{}
	done   chan struct{}
}

// WriterStats count the writer's pipelines (SET + WAIT on one connection).
type WriterStats struct {
	Attempted, OK, Failed, Acknowledged int
	// LongestGap is the longest time between two successful writes.
	LongestGap time.Duration
}

// WriterOptions tune a Writer.
type WriterOptions struct {
	// Metrics instruments the client (subsystem "presence").
	Metrics *metrics.Cache
	// Prefix starts every key (default "writer:<formation>:").
	Prefix string
	// Pause is the time between two writes (default 20 ms); after a failed
	// write the writer waits five times as long.
	Pause time.Duration
	// OnError sees every failed write's error (e.g. to scan it for
	// passwords).
	OnError func(error)
}

// StartWriter starts writing to formation f until Stop.
func StartWriter(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation, o WriterOptions) (*Writer, error) {
	c, err := ConnectionClient(ctx, k8s, f, redisclient.Options{Metrics: o.Metrics})
	if err != nil {
		return nil, err
	}
	if o.Pause == 0 {
		o.Pause = 20 * time.Millisecond
	}
	if o.Prefix == "" {
		o.Prefix = "writer:" + f.Name + ":"
	}
	w := &Writer{stop: make(chan struct{}), done: make(chan struct{}), lastOK: time.Now()}
	go func() {
		defer close(w.done)
		defer c.Close()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			pause := o.Pause
			if err := w.write(c, fmt.Sprintf("%s%d", o.Prefix, i)); err != nil {
				if o.OnError != nil {
					o.OnError(err)
				}
				pause *= 5
			}
			time.Sleep(pause)
		}
	}()
	return w, nil
}

func (w *Writer) write(c *redis.Client, key string) error {
	ctx, cancel := context.WithTimeout(redisclient.WithSubsystem(context.Background(), "presence"), time.Second)
	defer cancel()
	// One pipeline, so WAIT runs on the connection that wrote.
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

// Acknowledged returns the keys a replica acknowledged so far.
func (w *Writer) Acknowledged() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.acked...)
}

// Stats returns the counts so far.
func (w *Writer) Stats() WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// ResetGap starts timing the longest gap afresh (e.g. when a change begins).
func (w *Writer) ResetGap() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.LongestGap, w.lastOK = 0, time.Now()
}

// Stop stops writing (it may be called more than once, from one
// goroutine) and returns the final counts.
func (w *Writer) Stop() WriterStats {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.Stats()
}

// Lost reads every acknowledged key back through a fresh client from the
// connection Secret and returns those missing or wrong.
func (w *Writer) Lost(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation) ([]string, error) {
	return LostKeys(ctx, k8s, f, w.Acknowledged(), nil)
}

// LostKeys reads keys (whose value is the key) through a fresh client from
// the connection Secret, in batches, and returns those missing or wrong. A
// read error is retried for up to a minute (and shown to onError): it is
// not a loss until the formation answers.
func LostKeys(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation, keys []string, onError func(error)) ([]string, error) {
	c, err := ConnectionClient(ctx, k8s, f, redisclient.Options{})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var lost []string
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(len(keys), start+500)]
		vals, err := readBatch(ctx, c, batch, onError)
		if err != nil {
			return nil, fmt.Errorf("reading acknowledged keys back: %w", err)
		}
		for i, k := range batch {
			if s, ok := vals[i].(string); !ok || s != k {
				lost = append(lost, k)
			}
		}
	}
	return lost, nil
}

func readBatch(ctx context.Context, c *redis.Client, keys []string, onError func(error)) ([]any, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		vals, err := c.MGet(readCtx, keys...).Result()
		cancel()
		if err == nil {
			return vals, nil
		}
		if onError != nil {
			onError(err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ConnectionClient builds the backends' client from the formation's
// connection Secret.
func ConnectionClient(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation, o redisclient.Options) (*redis.Client, error) {
	conn := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-connection"}, conn); err != nil {
		return nil, err
	}
	return redisclient.FromSecretData(conn.Data, o)
}
