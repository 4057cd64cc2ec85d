package redisadmin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// A deleted formation's clients are closed, and only its own.
func TestForgetClosesOnlyThatFormationsClients(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	const password = "forget-test-password"
	p, err := testredis.Start(t.TempDir(), port, []byte(fmt.Sprintf("bind 127.0.0.1\nport %d\nrequirepass %s\nsave \"\"\nappendonly no\n", port, password)), password, false)
	if err != nil {
		testenv.Check(t, "redis-server", &testenv.UnavailableError{Err: err})
	}
	p.StopAtCleanup(t)
	server := endpoint.Endpoint{Host: "127.0.0.1", Port: port}
	d := NewGoRedisDialer(time.Second)
	defer d.Close()
	ctx := context.Background()
	a, b := d.Admin("ns/a", Credentials{Password: password}), d.Admin("ns/b", Credentials{Password: password})
	for _, admin := range []Admin{a, b} {
		if _, err := admin.Replication(ctx, server); err != nil {
			t.Fatal(err)
		}
	}
	kept := d.owners["ns/b"].servers[server.String()].client

	d.Forget("ns/a")
	if _, ok := d.owners["ns/a"]; ok {
		t.Fatal("ns/a's clients are still cached after Forget")
	}
	if err := kept.Ping(ctx).Err(); err != nil {
		t.Fatalf("ns/b's client was closed with ns/a's: %v", err)
	}
	// An Admin used after Forget dials anew rather than using a closed client.
	if _, err := a.Replication(ctx, server); err != nil {
		t.Fatalf("ns/a after Forget: %v", err)
	}
	d.Forget("ns/b")
	if err := kept.Ping(ctx).Err(); err == nil {
		t.Fatal("ns/b's client still answers after Forget")
	}
}
