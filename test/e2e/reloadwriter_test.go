package e2e

import (
	"context"
	"testing"
	"time"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// startReloadingWriter starts a backend as it runs in a pod that mounts the
// connection Secret: SET + WAIT 1 through the FailoverClient built from the
// Secret, which it re-reads every 2 s and at once after a failed write (a
// client that reloads within the rotation grace should see no error). It
// is stopped when the test ends.
func startReloadingWriter(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, prefix string) *harness.Writer {
	t.Helper()
	w, err := harness.StartWriter(context.Background(), k8s, f, harness.WriterOptions{Prefix: prefix, Reload: 2 * time.Second})
	if err != nil {
		t.Fatalf("writer: client from the connection Secret: %v", err)
	}
	t.Cleanup(func() { w.Stop() })
	return w
}

// writerPhase logs what the writer saw since the last phase (writes,
// failures, acknowledgements and the longest gap without a successful
// write) and starts counting afresh.
func writerPhase(t *testing.T, w *harness.Writer, what string) {
	t.Helper()
	st := w.Stats()
	w.Reset()
	t.Logf("%s: writer %d writes, %d failed (%s), %d acknowledged, longest gap %s, %d Secret reloads",
		what, st.Attempted, st.Failed, st.ErrorKinds(), st.Acknowledged, st.LongestGap.Round(time.Millisecond), st.Reloads)
}
