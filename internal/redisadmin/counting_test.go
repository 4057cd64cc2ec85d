package redisadmin_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

// nopAdmin answers every call with zero values.
type nopAdmin struct{ creds redisadmin.Credentials }

func (nopAdmin) Replication(context.Context, endpoint.Endpoint) (redisadmin.Replication, error) {
	return redisadmin.Replication{Role: "master"}, nil
}
func (nopAdmin) ReplicaOf(context.Context, endpoint.Endpoint, endpoint.Endpoint) error {
	return nil
}
func (nopAdmin) ConfigSet(context.Context, endpoint.Endpoint, map[string]string) error { return nil }
func (nopAdmin) SetUser(context.Context, endpoint.Endpoint, acl.User) error            { return nil }
func (nopAdmin) PauseWrites(context.Context, endpoint.Endpoint, time.Duration) error {
	return nil
}
func (nopAdmin) ResumeWrites(context.Context, endpoint.Endpoint) error { return nil }
func (nopAdmin) SentinelMaster(context.Context, endpoint.Endpoint, string) (redisadmin.MasterState, error) {
	return redisadmin.MasterState{Quorum: 2}, nil
}
func (nopAdmin) SentinelMasters(context.Context, endpoint.Endpoint) (map[string]redisadmin.MasterState, error) {
	return nil, nil
}
func (nopAdmin) SentinelCKQuorum(context.Context, endpoint.Endpoint, string) error { return nil }
func (nopAdmin) SentinelMonitor(context.Context, endpoint.Endpoint, string, endpoint.Endpoint, int) error {
	return nil
}
func (nopAdmin) SentinelRemove(context.Context, endpoint.Endpoint, string) error { return nil }
func (nopAdmin) SentinelSet(context.Context, endpoint.Endpoint, string, map[string]string) error {
	return nil
}
func (nopAdmin) SentinelReset(context.Context, endpoint.Endpoint, string) error    { return nil }
func (nopAdmin) SentinelFailover(context.Context, endpoint.Endpoint, string) error { return nil }
func (nopAdmin) SentinelReplicas(context.Context, endpoint.Endpoint, string) ([]redisadmin.ReplicaState, error) {
	return nil, nil
}
func (nopAdmin) SentinelSetUser(context.Context, endpoint.Endpoint, acl.User) error { return nil }
func (nopAdmin) SentinelConfigSet(context.Context, endpoint.Endpoint, map[string]string) error {
	return nil
}

type nopDialer struct{ got []redisadmin.Credentials }

func (d *nopDialer) Admin(_ string, c redisadmin.Credentials) redisadmin.Admin {
	d.got = append(d.got, c)
	return nopAdmin{c}
}

func (d *nopDialer) Forget(string) {}

func TestCountingCountsCallsAndCommands(t *testing.T) {
	ctx := context.Background()
	inner := &nopDialer{}
	d := redisadmin.Counting(inner)
	creds := redisadmin.Credentials{Username: "rsf-admin", Password: "a"}
	a := d.Admin("ns/f", creds)
	if len(inner.got) != 1 || inner.got[0] != creds {
		t.Fatalf("credentials not passed through: %v", inner.got)
	}
	var e endpoint.Endpoint
	if r, _ := a.Replication(ctx, e); r.Role != "master" {
		t.Fatal("answer not passed through")
	}
	if m, _ := a.SentinelMaster(ctx, e, "m"); m.Quorum != 2 {
		t.Fatal("answer not passed through")
	}
	_ = a.SentinelCKQuorum(ctx, e, "m")
	_, _ = a.SentinelReplicas(ctx, e, "m")
	_ = a.ReplicaOf(ctx, e, e)                                             // 2
	_ = a.ConfigSet(ctx, e, map[string]string{"maxmemory": "1", "x": "y"}) // 3
	_ = a.SentinelMonitor(ctx, e, "m", e, 2)                               // 1
	_ = a.SentinelSet(ctx, e, "m", map[string]string{"a": "1", "b": "2"})  // 2
	_ = a.SentinelRemove(ctx, e, "m")
	_ = a.SentinelReset(ctx, e, "m")
	_ = a.SentinelFailover(ctx, e, "m")
	_ = a.SetUser(ctx, e, acl.User{Name: "u"})                                         // 2
	_ = a.SentinelSetUser(ctx, e, acl.User{Name: "u"})                                 // 2
	_ = a.SentinelConfigSet(ctx, e, map[string]string{"sentinel-pass": "p", "x": "y"}) // 2
	_ = a.PauseWrites(ctx, e, time.Second)
	_ = a.ResumeWrites(ctx, e)

	c := d.Counts()
	if c.ReadCommands != 4 || c.WriteCommands != 2+3+1+2+1+1+1+2+2+2+1+1 || c.Commands != c.ReadCommands+c.WriteCommands {
		t.Fatalf("counts %+v", c)
	}
	if len(c.Calls) != 16 {
		t.Fatalf("calls per method %v", c.Calls)
	}
	for m, n := range c.Calls {
		if n != 1 {
			t.Errorf("%s called %d times", m, n)
		}
	}
	d.Reset()
	if c := d.Counts(); c.Commands != 0 || len(c.Calls) != 0 {
		t.Fatalf("after Reset: %+v", c)
	}
}

// Every Admin method has an entry in the command table.
func TestCommandsPerCallCoversReadMethods(t *testing.T) {
	for _, m := range redisadmin.ReadMethods {
		if redisadmin.CommandsPerCall[m] != 1 {
			t.Errorf("read method %s: %d commands", m, redisadmin.CommandsPerCall[m])
		}
	}
	admin := reflect.TypeFor[redisadmin.Admin]()
	if len(redisadmin.CommandsPerCall) != admin.NumMethod() {
		t.Errorf("CommandsPerCall has %d methods, Admin has %d", len(redisadmin.CommandsPerCall), admin.NumMethod())
	}
	for i := range admin.NumMethod() {
		if _, ok := redisadmin.CommandsPerCall[admin.Method(i).Name]; !ok {
			t.Errorf("CommandsPerCall lacks %s", admin.Method(i).Name)
		}
	}
}
