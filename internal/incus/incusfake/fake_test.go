package incusfake_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
)

func TestFakeSmoke(t *testing.T) {
	ctx := context.Background()
	f := incusfake.New()

	var s incus.Server = f

	spec := incus.InstanceSpec{
		Name:     "a",
		Image:    "rsf-redis7-bookworm-v1",
		Profiles: []string{"rsf-redis"},
		Config:   map[string]string{"user.rsf.formation": "x"},
	}
	if err := s.CreateInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}

	if err := s.CreateInstance(ctx, spec); !errors.Is(err, incus.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}

	inst, err := s.GetInstance(ctx, "a")
	if err != nil || inst.Status != "Running" || inst.IPv4 != "10.99.0.2" {
		t.Fatalf("get: %+v %v", inst, err)
	}

	if _, err := s.GetInstance(ctx, "nope"); !errors.Is(err, incus.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}

	if err := s.UpdateInstanceDevice(ctx, "a", "eth0", map[string]string{"ipv4.address": "10.77.0.50"}); err != nil {
		t.Fatal(err)
	}

	inst, _ = s.GetInstance(ctx, "a")
	if inst.Devices["eth0"]["network"] != "rsfbr0" || inst.IPv4 != "10.77.0.50" {
		t.Fatalf("device: %+v", inst)
	}

	if err := s.WriteFile(ctx, "a", "/etc/x.conf", []byte("hi"), 0, 0, 0); err != nil {
		t.Fatal(err)
	}

	if file, ok := f.File("a", "/etc/x.conf"); !ok || string(file.Content) != "hi" || file.Mode != 0o644 {
		t.Fatalf("file: %+v %v", file, ok)
	}

	f.ExecFunc = func(_ string, cmd []string) (incus.ExecResult, error) {
		return incus.ExecResult{Stdout: cmd[0], ExitCode: 3}, nil
	}

	if r, err := s.Exec(ctx, "a", []string{"echo"}); err != nil || r.Stdout != "echo" || r.ExitCode != 3 {
		t.Fatalf("exec: %+v %v", r, err)
	}

	for range 2 {
		if err := s.StopInstance(ctx, "a", false); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := s.Exec(ctx, "a", []string{"true"}); err == nil {
		t.Fatal("exec on stopped instance succeeded")
	}

	boom := errors.New("boom")
	f.FailNext(incusfake.StartInstance, boom)

	if err := s.StartInstance(ctx, "a"); !errors.Is(err, boom) {
		t.Fatalf("injected: %v", err)
	}

	if err := s.StartInstance(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	if l, _ := s.ListInstances(ctx, "user.rsf.formation", "x"); len(l) != 1 {
		t.Fatalf("list: %+v", l)
	}

	if err := s.DeleteInstance(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	if err := s.DeleteInstance(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	if got := f.WriteCalls(); got != 12 {
		t.Fatalf("write calls = %d, calls %v", got, f.Calls())
	}

	f.ResetCalls()

	// Concurrency (meaningful under -race).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := string(rune('b' + i))
			_ = s.CreateInstance(ctx, incus.InstanceSpec{Name: name, Image: "rsf-redis7-bookworm-v1"})
			_, _ = s.GetInstance(ctx, name)
			_ = f.Calls()
		})
	}
	wg.Wait()

	if got := f.Calls()[incusfake.CreateInstance]; got != 8 {
		t.Fatalf("creates = %d", got)
	}
}

func TestFakeLifecycleHooks(t *testing.T) {
	ctx := context.Background()
	f := incusfake.New()
	var mu sync.Mutex
	var got []string
	record := func(kind string) func(string) {
		return func(name string) {
			// The hooks run without the fake's lock: calling back is fine.
			_, _ = f.GetInstance(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			got = append(got, kind+" "+name)
		}
	}
	f.OnStart, f.OnStop, f.OnDelete = record("start"), record("stop"), record("delete")

	spec := incus.InstanceSpec{Name: "a", Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"}}
	steps := []func() error{
		func() error { return f.CreateInstance(ctx, spec) },
		func() error { return f.StartInstance(ctx, "a") }, // already running: no hook
		func() error { return f.StopInstance(ctx, "a", false) },
		func() error { return f.StopInstance(ctx, "a", true) }, // already stopped: no hook
		func() error { return f.StartInstance(ctx, "a") },
		func() error { return f.SetStatus("a", "Error") },
		func() error { return f.SetStatus("a", "Running") },
		func() error { return f.DeleteInstance(ctx, "a") },
		func() error { return f.DeleteInstance(ctx, "a") }, // already gone: no hook
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []string{"start a", "stop a", "start a", "stop a", "start a", "stop a", "delete a"}
	if !slices.Equal(got, want) {
		t.Fatalf("hooks: got %q, want %q", got, want)
	}

	// A failed call tells nobody.
	got = nil
	f.FailNext(incusfake.DeleteInstance, errors.New("boom"))
	if err := f.CreateInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteInstance(ctx, "a"); err == nil {
		t.Fatal("injected failure not returned")
	}
	if want := []string{"start a"}; !slices.Equal(got, want) {
		t.Fatalf("hooks after a failed delete: got %q, want %q", got, want)
	}
}

// The fake emits the lifecycle events Incus would for what is done through
// it, in order, and BreakStreams ends the streams.
func TestFakeLifecycleEvents(t *testing.T) {
	ctx := context.Background()
	f := incusfake.New()
	events := make(chan incus.LifecycleEvent, 16)
	ended := make(chan error, 1)
	connected := make(chan struct{})
	go func() {
		ended <- f.WatchLifecycle(ctx, func() { close(connected) }, func(e incus.LifecycleEvent) { events <- e })
	}()
	<-connected

	spec := incus.InstanceSpec{Name: "a", Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"}}
	if err := f.CreateInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}
	_ = f.StopInstance(ctx, "a", true)
	_ = f.StopInstance(ctx, "a", true) // already stopped: no event
	_ = f.StartInstance(ctx, "a")
	_ = f.SetStatus("a", "Stopped") // a crash, or a stop from outside
	_ = f.StartInstance(ctx, "a")
	_ = f.DeleteInstance(ctx, "a")
	f.Emit(incus.LifecycleEvent{Action: incus.ActionInstanceRestarted, Instance: "b"})

	want := []string{
		"a " + incus.ActionInstanceStarted, "a " + incus.ActionInstanceStopped, "a " + incus.ActionInstanceStarted,
		"a " + incus.ActionInstanceStopped, "a " + incus.ActionInstanceStarted, "a " + incus.ActionInstanceStopped,
		"a " + incus.ActionInstanceDeleted, "b " + incus.ActionInstanceRestarted,
	}
	var got []string
	for range want {
		e := <-events
		got = append(got, e.Instance+" "+e.Action)
	}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}

	boom := errors.New("incusd restarted")
	f.BreakStreams(boom)
	if err := <-ended; !errors.Is(err, boom) {
		t.Errorf("WatchLifecycle ended with %v, want %v", err, boom)
	}
	if f.Streams() != 0 {
		t.Errorf("%d streams after BreakStreams", f.Streams())
	}
}
