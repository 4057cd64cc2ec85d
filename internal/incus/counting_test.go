package incus_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
)

func TestCountingSplitsReadsAndWrites(t *testing.T) {
	ctx := context.Background()
	fake := incusfake.New()
	c := incus.Counting(fake)

	srv, err := c.Server(ctx, incus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	spec := incus.InstanceSpec{Name: "m-1", Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"}}
	if err := srv.CreateInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.GetInstance(ctx, "m-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.GetInstance(ctx, "missing"); !errors.Is(err, incus.ErrNotFound) {
		t.Fatalf("GetInstance of a missing instance: %v", err)
	}
	_, _ = srv.ListInstances(ctx, "user.x", "y")
	_ = srv.WriteFile(ctx, "m-1", "/etc/x", []byte("x"), 0, 0, 0)
	_, _ = srv.Exec(ctx, "m-1", []string{"true"})
	_ = srv.UpdateInstanceDevice(ctx, "m-1", "eth0", map[string]string{"ipv4.address": "10.99.0.2"})
	_ = srv.StopInstance(ctx, "m-1", true)
	_ = srv.StartInstance(ctx, "m-1")
	_ = srv.DeleteInstance(ctx, "m-1")
	_, _, _ = srv.ImageProperties(ctx, "x")
	for _, exists := range []func(context.Context, string) (bool, error){srv.ProfileExists, srv.NetworkExists, srv.StoragePoolExists} {
		_, _ = exists(ctx, "x")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_ = srv.WatchLifecycle(cancelled, func() {}, func(incus.LifecycleEvent) {})
	c.Forget(incus.Options{})

	if got := c.Writes(); got != 7 {
		t.Errorf("writes = %d, want 7 (%v)", got, c.Calls())
	}
	if got := c.Reads(); got != 8 {
		t.Errorf("reads = %d, want 8 (%v)", got, c.Calls())
	}
	if got := c.Calls()[incus.MethodGetInstance]; got != 2 {
		t.Errorf("GetInstance = %d, want 2 (failed calls count)", got)
	}
	if c.Connects() != 1 || c.Forgets() != 1 {
		t.Errorf("connects %d, forgets %d; want 1 and 1", c.Connects(), c.Forgets())
	}
	// The wrapped backend saw the same calls.
	if fake.WriteCalls() != 7 {
		t.Errorf("fake write calls = %d, want 7", fake.WriteCalls())
	}
	c.Reset()
	if c.Reads() != 0 || c.Writes() != 0 || c.Connects() != 0 || len(c.Calls()) != 0 {
		t.Errorf("after Reset: reads %d, writes %d, connects %d, calls %v", c.Reads(), c.Writes(), c.Connects(), c.Calls())
	}
}

// The two lists of write methods must not drift apart.
func TestCountingWriteMethodsMatchFake(t *testing.T) {
	a, b := slices.Sorted(slices.Values(incus.WriteMethods)), slices.Sorted(slices.Values(incusfake.WriteMethods))
	if !slices.Equal(a, b) {
		t.Fatalf("incus.WriteMethods %v, incusfake.WriteMethods %v", a, b)
	}
}

func TestCountingPassesConnectErrors(t *testing.T) {
	fake := incusfake.New()
	boom := errors.New("boom")
	fake.SetFail(incusfake.Connect, boom)
	c := incus.Counting(fake)
	if srv, err := c.Server(context.Background(), incus.Options{}); !errors.Is(err, boom) || srv != nil {
		t.Fatalf("Server = %v, %v; want nil, boom", srv, err)
	}
	if c.Connects() != 1 {
		t.Fatalf("connects = %d", c.Connects())
	}
}
