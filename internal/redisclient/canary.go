package redisclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultCanaryKey is the key Canary uses when given "".
const DefaultCanaryKey = "rsf:canary"

// CanaryTTL is the lifetime of the value Canary writes.
const CanaryTTL = 30 * time.Second

// ErrCanaryMismatch means the canary read back another value than it wrote
// (e.g. the GET reached a different node than the SET).
var ErrCanaryMismatch = errors.New("canary: value read back differs from the value written")

// Canary writes a random nonce to key with a short TTL (CanaryTTL), reads it
// back through the same client and compares. It returns the time the SET and
// GET took. Its commands are counted under the "canary" subsystem. With a
// FailoverClient it proves that the sentinels name a master that accepts
// writes.
func Canary(ctx context.Context, c redis.Cmdable, key string) (time.Duration, error) {
	if key == "" {
		key = DefaultCanaryKey
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return 0, fmt.Errorf("canary: nonce: %w", err)
	}
	nonce := hex.EncodeToString(raw[:])

	ctx = WithSubsystem(ctx, "canary")
	start := time.Now()
	if err := c.Set(ctx, key, nonce, CanaryTTL).Err(); err != nil {
		return time.Since(start), fmt.Errorf("canary: SET: %w", err)
	}
	got, err := c.Get(ctx, key).Result()
	elapsed := time.Since(start)
	if err != nil {
		return elapsed, fmt.Errorf("canary: GET: %w", err)
	}
	if got != nonce {
		return elapsed, ErrCanaryMismatch
	}
	return elapsed, nil
}
