package redisclient

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/metrics"
)

type subsystemKey struct{}

// WithSubsystem returns a context whose Redis commands are counted under
// subsystem (e.g. "rate_limiter"). Names outside metrics.Subsystems() are
// counted as "other". Without it, commands count as "other".
func WithSubsystem(ctx context.Context, subsystem string) context.Context {
	return context.WithValue(ctx, subsystemKey{}, metrics.ParseSubsystem(subsystem))
}

// SubsystemFrom returns the subsystem set by WithSubsystem ("other" if none).
func SubsystemFrom(ctx context.Context) string {
	return subsystemOf(ctx).String()
}

func subsystemOf(ctx context.Context) metrics.Subsystem {
	s, _ := ctx.Value(subsystemKey{}).(metrics.Subsystem)
	return s
}

// Hook is a redis.Hook that counts every command (each command of a
// pipeline too) as a hit or a miss of the context's subsystem:
//   - no error, or redis.Nil (a legitimate empty result): hit;
//   - any other error: miss (the caller is expected to fall back).
//
// Connection set-up commands that go-redis sends on its own (HELLO, AUTH,
// SELECT, CLIENT ..., READONLY) and the MULTI/EXEC wrappers of transactions
// are not counted. Dials are not counted either: a failed dial fails the
// command that needed it, which counts as a miss.
//
// The counters are resolved once, in metrics.NewCache; the hook itself does
// not allocate.
type Hook struct {
	cache *metrics.Cache
}

var _ redis.Hook = (*Hook)(nil)

// NewHook returns a hook counting on cache.
func NewHook(cache *metrics.Cache) *Hook { return &Hook{cache: cache} }

// DialHook implements redis.Hook; it does not wrap dials.
func (h *Hook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (h *Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if !uncounted(cmd.Name()) {
			h.record(subsystemOf(ctx), err)
		}
		return err
	}
}

// ProcessPipelineHook implements redis.Hook (pipelines and transactions).
func (h *Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		s := subsystemOf(ctx)
		for _, cmd := range cmds {
			if uncounted(cmd.Name()) {
				continue
			}
			cerr := cmd.Err()
			if cerr == nil && err != nil && !isRedisError(err) {
				// The pipeline failed as a whole (e.g. the dial was refused
				// on the last retry): go-redis then leaves the commands'
				// own errors unset.
				cerr = err
			}
			h.record(s, cerr)
		}
		return err
	}
}

func (h *Hook) record(s metrics.Subsystem, err error) {
	if err == nil || err == redis.Nil || errors.Is(err, redis.Nil) {
		h.cache.Hit(s)
		return
	}
	h.cache.Miss(s)
}

// uncounted reports commands that are plumbing rather than cache use.
func uncounted(name string) bool {
	switch name {
	case "hello", "auth", "select", "client", "readonly", "multi", "exec":
		return true
	}
	return false
}

func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}
