package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

var (
	k8s      client.Client
	startErr error
)

func TestMain(m *testing.M) {
	env, cfg, err := testenv.Start()
	startErr = err
	if err == nil {
		scheme := runtime.NewScheme()
		_ = redisv1alpha1.AddToScheme(scheme)
		k8s, startErr = client.New(cfg, client.Options{Scheme: scheme})
	}
	code := m.Run()
	if env != nil {
		_ = env.Stop()
	}
	os.Exit(code)
}

func apiServer(t *testing.T) client.Client {
	t.Helper()
	if startErr != nil {
		testenv.Check(t, "the envtest API server", startErr)
	}
	return k8s
}

// sampleFormation reads the formation from config/samples, as a user would
// kubectl-apply it.
func sampleFormation(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.RepoRoot(), "config", "samples", "redis_v1alpha1_redissentinelformation.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			t.Fatalf("no RedisSentinelFormation in the sample: %v", err)
		}
		if obj.GetKind() == "RedisSentinelFormation" {
			obj.SetNamespace("default")
			return obj
		}
	}
}

func TestSampleIsAcceptedAndDefaulted(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	obj := sampleFormation(t)
	obj.SetName("sample-accepted")
	if err := c.Create(ctx, obj); err != nil {
		t.Fatalf("the sample was rejected: %v", err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, obj) })

	// A minimal formation: only the required secret references.
	minimal := &redisv1alpha1.RedisSentinelFormation{}
	minimal.Name, minimal.Namespace = "minimal", "default"
	minimal.Spec.Auth.PasswordSecretRef.Name = "pw"
	minimal.Spec.Auth.SentinelPasswordSecretRef.Name = "spw"
	if err := c.Create(ctx, minimal); err != nil {
		t.Fatalf("a minimal formation was rejected: %v", err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, minimal) })

	s := minimal.Spec // Create decodes the defaulted object back into minimal.
	checks := []struct {
		field     string
		got, want any
	}{
		{"masterName", s.MasterName, "mymaster"},
		{"members", s.Members, int32(3)},
		{"quorum", s.Quorum, int32(2)},
		{"environment", s.Environment, redisv1alpha1.EnvironmentProduction},
		{"auth.backendUser.name", s.Auth.BackendUser.Name, "backend"},
		{"auth.backendUser.rules", len(s.Auth.BackendUser.Rules), 0},
		{"sentinel.downAfterMilliseconds", s.Sentinel.DownAfterMilliseconds, int32(5000)},
		{"sentinel.failoverTimeoutMilliseconds", s.Sentinel.FailoverTimeoutMilliseconds, int32(30000)},
		{"sentinel.parallelSyncs", s.Sentinel.ParallelSyncs, int32(1)},
		{"redis.port", s.Redis.Port, int32(6379)},
		{"redis.sentinelPort", s.Redis.SentinelPort, int32(26379)},
		{"redis.maxmemory", s.Redis.Maxmemory, "1gb"},
		{"redis.maxmemoryPolicy", s.Redis.MaxmemoryPolicy, redisv1alpha1.MaxmemoryPolicy("allkeys-lru")},
		{"redis.minReplicasToWrite", deref(s.Redis.MinReplicasToWrite), int32(1)},
		{"redis.minReplicasMaxLagSeconds", s.Redis.MinReplicasMaxLagSeconds, int32(2)},
		{"redis.persistence.aof.enabled", derefBool(s.Redis.Persistence.AOF.Enabled), true},
		{"redis.persistence.aof.fsync", s.Redis.Persistence.AOF.Fsync, redisv1alpha1.AppendFsync("everysec")},
		{"redis.persistence.rdb.enabled", derefBool(s.Redis.Persistence.RDB.Enabled), true},
		{"redis.persistence.rdb.savePoints", len(s.Redis.Persistence.RDB.SavePoints), 1},
		{"auth.passwordSecretRef.key", s.Auth.PasswordSecretRef.Key, "password"},
		{"engine", s.Engine, redisv1alpha1.EngineRedis},
		{"incus.image", s.Incus.Image, ""}, // the engine's image
		{"incus.profiles", strings.Join(s.Incus.Profiles, ","), "rsf-redis"},
		{"incus.network", s.Incus.Network, "rsfbr0"},
		{"incus.storagePool", s.Incus.StoragePool, "rsf"},
		{"incus.project", s.Incus.Project, "default"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("spec.%s defaulted to %v, want %v", c.field, c.got, c.want)
		}
	}
}

func deref(p *int32) int32 {
	if p == nil {
		return -1
	}
	return *p
}

func derefBool(p *bool) bool { return p != nil && *p }

// TestSchemaRejectsBadInput: every bad input is refused by the API server with
// a message naming the field.
func TestSchemaRejectsBadInput(t *testing.T) {
	c := apiServer(t)
	cases := []struct {
		name   string
		mutate func(spec map[string]any, obj *unstructured.Unstructured)
		want   string // substring of the API server's message
	}{
		{"quorum 0", set("quorum", 0), "spec.quorum"},
		{"quorum above members", set("quorum", 5), "spec.quorum must not exceed spec.members"},
		{"minority quorum without opt-in", set("quorum", 1), "spec.quorum is below a majority"},
		{"even members", func(s map[string]any, _ *unstructured.Unstructured) { s["members"], s["quorum"] = 4, 3 }, "spec.members must be odd"},
		{"members 1", func(s map[string]any, _ *unstructured.Unstructured) { s["members"], s["quorum"] = 1, 1 }, "spec.members"},
		{"members 9", func(s map[string]any, _ *unstructured.Unstructured) { s["members"], s["quorum"] = 9, 5 }, "spec.members"},
		{"zero down-after", set("sentinel.downAfterMilliseconds", 0), "spec.sentinel.downAfterMilliseconds"},
		{"negative down-after", set("sentinel.downAfterMilliseconds", -5000), "spec.sentinel.downAfterMilliseconds"},
		{"zero failover timeout", set("sentinel.failoverTimeoutMilliseconds", 0), "spec.sentinel.failoverTimeoutMilliseconds"},
		{"negative failover timeout", set("sentinel.failoverTimeoutMilliseconds", -1), "spec.sentinel.failoverTimeoutMilliseconds"},
		{"zero parallel syncs", set("sentinel.parallelSyncs", 0), "spec.sentinel.parallelSyncs"},
		{"unknown eviction policy", set("redis.maxmemoryPolicy", "allkeys-fifo"), "spec.redis.maxmemoryPolicy"},
		{"maxmemory with a space", set("redis.maxmemory", "1 gb"), "spec.redis.maxmemory"},
		{"maxmemory in words", set("redis.maxmemory", "lots"), "spec.redis.maxmemory"},
		{"maxmemory with a unit Redis lacks", set("redis.maxmemory", "1tb"), "spec.redis.maxmemory"},
		{"master name with a space", set("masterName", "my master"), "spec.masterName"},
		{"master name with a newline", set("masterName", "mymaster\nsentinel monitor x"), "spec.masterName"},
		{"empty master name", set("masterName", ""), "spec.masterName"},
		{"missing password secret ref", unset("auth.passwordSecretRef"), "spec.auth.passwordSecretRef"},
		{"missing sentinel password secret ref", unset("auth.sentinelPasswordSecretRef"), "spec.auth.sentinelPasswordSecretRef"},
		{"missing auth", unset("auth"), "spec.auth"},
		{"secret ref without a name", unset("auth.passwordSecretRef.name"), "spec.auth.passwordSecretRef.name"},
		{"redis and sentinel on one port", set("redis.sentinelPort", 6379), "spec.redis.sentinelPort"},
		{"min replicas to write unreachable", set("redis.minReplicasToWrite", 3), "spec.redis.minReplicasToWrite"},
		{"write fence slower than failover", set("redis.minReplicasMaxLagSeconds", 5), "spec.redis.minReplicasMaxLagSeconds must be shorter"},
		{"unknown environment", set("environment", "prod"), "spec.environment"},
		{"placement targets for some members only", set("incus.targets", []any{"node1"}), "spec.incus.targets"},
		{"parallel syncs not below members", set("sentinel.parallelSyncs", 3), "spec.sentinel.parallelSyncs"},
		{"placement targets and group", func(s map[string]any, _ *unstructured.Unstructured) {
			s["incus"].(map[string]any)["targets"] = []any{"a", "b", "c"}
			s["incus"].(map[string]any)["placement"] = map[string]any{"group": "fast"}
		}, "spec.incus.targets and spec.incus.placement.group exclude each other"},
		{"placement target twice under spread Required", set("incus.targets", []any{"a", "a", "b"}), "names a cluster member twice"},
		{"unknown spread", set("incus.placement", map[string]any{"spread": "Always"}), "spec.incus.placement.spread"},
		{"replaceAfter under 30s", set("incus.placement", map[string]any{"replaceAfter": "10s"}), "spec.incus.placement.replaceAfter must be at least 30s"},
		{"replaceAfter not a duration", set("incus.placement", map[string]any{"replaceAfter": "soon"}), "spec.incus.placement.replaceAfter"},
		{"name that cannot prefix an instance", func(_ map[string]any, o *unstructured.Unstructured) { o.SetName("cache.prod") }, "metadata.name"},
		{"backend user named default", set("auth.backendUser.name", "default"), "spec.auth.backendUser.name"},
		{"backend user named like the operator's", set("auth.backendUser.name", "rsf-admin"), "spec.auth.backendUser.name"},
		{"backend user name with a space", set("auth.backendUser.name", "app user"), "spec.auth.backendUser.name"},
		{"backend rule granting @admin", set("auth.backendUser.rules", []any{"+@admin"}), "spec.auth.backendUser.rules"},
		{"backend rule granting @dangerous", set("auth.backendUser.rules", []any{"~*", "+@dangerous"}), "spec.auth.backendUser.rules"},
		{"backend rule granting CONFIG", set("auth.backendUser.rules", []any{"+get", "+config"}), "spec.auth.backendUser.rules"},
		{"backend rule granting CONFIG SET", set("auth.backendUser.rules", []any{"+config|set"}), "spec.auth.backendUser.rules"},
		{"backend rule granting REPLICAOF", set("auth.backendUser.rules", []any{"+replicaof"}), "spec.auth.backendUser.rules"},
		{"backend rule granting ACL", set("auth.backendUser.rules", []any{"+acl"}), "spec.auth.backendUser.rules"},
		{"backend rule granting SHUTDOWN", set("auth.backendUser.rules", []any{"+shutdown"}), "spec.auth.backendUser.rules"},
		{"backend rule granting replication", set("auth.backendUser.rules", []any{"+psync"}), "spec.auth.backendUser.rules"},
		{"backend +@all without -@admin", set("auth.backendUser.rules", []any{"~*", "+@all", "-@dangerous"}), "spec.auth.backendUser.rules"},
		{"backend rule setting a password", set("auth.backendUser.rules", []any{">secret"}), "spec.auth.backendUser.rules"},
		{"backend rule enabling nopass", set("auth.backendUser.rules", []any{"nopass"}), "spec.auth.backendUser.rules"},
		{"backend rule turning the user off", set("auth.backendUser.rules", []any{"off"}), "spec.auth.backendUser.rules"},
		{"backend rule with a newline", set("auth.backendUser.rules", []any{"~*\nuser x on"}), "spec.auth.backendUser.rules"},
		{"backend rule allcommands", set("auth.backendUser.rules", []any{"allcommands"}), "spec.auth.backendUser.rules"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := sampleFormation(t)
			obj.SetName("bad-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26))
			spec := obj.Object["spec"].(map[string]any)
			tc.mutate(spec, obj)
			err := c.Create(context.Background(), obj)
			if err == nil {
				_ = c.Delete(context.Background(), obj)
				t.Fatalf("the API server accepted it; want a rejection naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejected with %q; want the message to name %q", err, tc.want)
			}
			// A rule that cannot evaluate is a broken rule, not a validation.
			if strings.Contains(err.Error(), "no such key") || strings.Contains(err.Error(), "evaluating rule") {
				t.Fatalf("a CEL rule failed to evaluate instead of validating: %v", err)
			}
		})
	}
}

// TestBackendRulesThatNarrowOrExtendAreAccepted: the schema refuses only
// what would hand a backend the formation, not ordinary rule sets.
func TestBackendRulesThatNarrowOrExtendAreAccepted(t *testing.T) {
	c := apiServer(t)
	for i, rules := range [][]any{
		{"-@all", "+get", "+set", "~app:*", "&news:*"},
		{"~*", "&*", "+@all", "-@admin", "-@dangerous", "+flushdb", "+keys"},
		{"resetkeys", "%R~*", "%RW~cache:*", "allchannels", "+@read", "-@write", "+client|setname"},
	} {
		obj := sampleFormation(t)
		obj.SetName("rules-ok-" + string(rune('a'+i)))
		set("auth.backendUser.rules", rules)(obj.Object["spec"].(map[string]any), obj)
		if err := c.Create(context.Background(), obj); err != nil {
			t.Errorf("rules %v were rejected: %v", rules, err)
			continue
		}
		_ = c.Delete(context.Background(), obj)
	}
}

// TestBackendUserNameIsImmutable: renaming the backend user would lock its
// backends out, so the API server refuses it.
func TestBackendUserNameIsImmutable(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	obj := sampleFormation(t)
	obj.SetName("backend-rename")
	if err := c.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, obj) })
	set("auth.backendUser.name", "app")(obj.Object["spec"].(map[string]any), obj)
	err := c.Update(ctx, obj)
	if err == nil || !strings.Contains(err.Error(), "spec.auth.backendUser.name cannot be changed") {
		t.Fatalf("renaming the backend user: got %v, want a rejection naming spec.auth.backendUser.name", err)
	}
}

func TestMinorityQuorumNeedsOptIn(t *testing.T) {
	c := apiServer(t)
	obj := sampleFormation(t)
	obj.SetName("minority-opt-in")
	spec := obj.Object["spec"].(map[string]any)
	spec["quorum"], spec["allowMinorityQuorum"] = int64(1), true
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("quorum 1 of 3 with allowMinorityQuorum was rejected: %v", err)
	}
	_ = c.Delete(context.Background(), obj)
}

// set returns a mutation that sets a dotted path of the spec.
func set(path string, value any) func(map[string]any, *unstructured.Unstructured) {
	return func(spec map[string]any, _ *unstructured.Unstructured) {
		if n, ok := value.(int); ok {
			value = int64(n)
		}
		parts := strings.Split(path, ".")
		if err := unstructured.SetNestedField(spec, value, parts...); err != nil {
			panic(err)
		}
	}
}

// unset returns a mutation that removes a dotted path of the spec.
func unset(path string) func(map[string]any, *unstructured.Unstructured) {
	return func(spec map[string]any, _ *unstructured.Unstructured) {
		unstructured.RemoveNestedField(spec, strings.Split(path, ".")...)
	}
}

// The operator writes status with merge patches computed from the object it
// read. A field its Go type always has but the stored object lacks (never
// written because it was zero) is left out of such a patch; a later patch
// of its sibling alone must still be valid.
func TestStatusMergePatchesOfPartlyStoredFieldsAreValid(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	f := &redisv1alpha1.RedisSentinelFormation{}
	f.Name, f.Namespace = "status-patches", "default"
	f.Spec.Auth.PasswordSecretRef.Name = "pw"
	f.Spec.Auth.SentinelPasswordSecretRef.Name = "spw"
	if err := c.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, f) })

	steps := []func(*redisv1alpha1.RedisSentinelFormationStatus){
		func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.Phase = redisv1alpha1.PhaseProvisioning },
		func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.Sentinels.Reachable = 3 },
		func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.Sentinels.QuorumOK = true },
		func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.Sentinels.Reachable = 0 },
	}
	for i, step := range steps {
		base := f.DeepCopy()
		step(&f.Status)
		if err := c.Status().Patch(ctx, f, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			t.Fatalf("status patch %d refused: %v", i+1, err)
		}
	}
	if f.Status.Sentinels.Reachable != 0 || !f.Status.Sentinels.QuorumOK {
		t.Fatalf("sentinels %+v after the patches", f.Status.Sentinels)
	}
}

// TestEngineMigratesOneWay: redis may become valkey (a live migration),
// never the reverse, which Redis 7 cannot replicate.
func TestEngineMigratesOneWay(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	obj := sampleFormation(t)
	obj.SetName("engine-one-way")
	if err := c.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, obj) })
	set("engine", "valkey")(obj.Object["spec"].(map[string]any), obj)
	if err := c.Update(ctx, obj); err != nil {
		t.Fatalf("redis -> valkey refused: %v", err)
	}
	set("engine", "redis")(obj.Object["spec"].(map[string]any), obj)
	err := c.Update(ctx, obj)
	if err == nil || !strings.Contains(err.Error(), "spec.engine cannot go back from valkey to redis") {
		t.Fatalf("valkey -> redis: got %v, want the one-way refusal", err)
	}
	unset("engine")(obj.Object["spec"].(map[string]any), obj)
	if err := c.Update(ctx, obj); err == nil || !strings.Contains(err.Error(), "spec.engine cannot go back") {
		t.Fatalf("valkey -> unset (the redis default): got %v, want the one-way refusal", err)
	}

	bad := sampleFormation(t)
	bad.SetName("engine-unknown")
	set("engine", "keydb")(bad.Object["spec"].(map[string]any), bad)
	if err := c.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "spec.engine") {
		_ = c.Delete(ctx, bad)
		t.Fatalf("engine keydb: got %v, want a rejection naming spec.engine", err)
	}
}

// TestPlacementIsImmutable: the host, project and network of a formation
// cannot change (its containers and pinned addresses would be left
// behind); the other Incus fields can (they are rolled out).
func TestPlacementIsImmutable(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		change func(map[string]any, *unstructured.Unstructured)
		field  string // "" when the change must be accepted
	}{
		{"hostRef set later", set("incus.hostRef", "other"), "spec.incus.hostRef cannot be changed"},
		{"project", set("incus.project", "team-b"), "spec.incus.project cannot be changed"},
		{"network", set("incus.network", "otherbr0"), "spec.incus.network cannot be changed"},
		{"image (rolled)", set("incus.image", "rsf-redis7-bookworm-v2"), ""},
		{"storage pool (rolled)", set("incus.storagePool", "fast"), ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := sampleFormation(t)
			obj.SetName(fmt.Sprintf("placement-%d", i))
			if err := c.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(ctx, obj) })
			tc.change(obj.Object["spec"].(map[string]any), obj)
			err := c.Update(ctx, obj)
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("got %v, want a rejection saying %q", err, tc.field)
			}
		})
	}

	obj := sampleFormation(t)
	obj.SetName("placement-named")
	set("incus.hostRef", "local")(obj.Object["spec"].(map[string]any), obj)
	if err := c.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, obj) })
	set("incus.hostRef", "elsewhere")(obj.Object["spec"].(map[string]any), obj)
	if err := c.Update(ctx, obj); err == nil || !strings.Contains(err.Error(), "spec.incus.hostRef cannot be changed") {
		t.Fatalf("moving to another host: got %v", err)
	}
}

// TestIncusHostSchema: the lab sample is accepted with the lab's allowlist
// as defaults; a host with both a socket and a remote, or a remote that is
// not https, is refused.
func TestIncusHostSchema(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	local := &redisv1alpha1.IncusHost{}
	if err := c.Get(ctx, client.ObjectKey{Name: "local"}, local); err != nil {
		t.Fatalf("the sample host created by testenv: %v", err)
	}
	a := local.Spec.Allowed
	if !local.Spec.Default || local.Spec.NamespaceSelector == nil || fmt.Sprint(a.Projects, a.Profiles, a.Networks, a.StoragePools, a.Images) != "[default] [rsf-redis] [rsfbr0] [rsf] [rsf-redis7-bookworm-v1 rsf-valkey8-bookworm-v1]" {
		t.Fatalf("sample host spec %+v", local.Spec)
	}
	remote := func(url string) *redisv1alpha1.IncusHostRemote {
		return &redisv1alpha1.IncusHostRemote{URL: url, ClientCertificateSecretName: "incus-client", ServerCertificate: "-----BEGIN CERTIFICATE-----"}
	}
	cases := []struct {
		name string
		spec redisv1alpha1.IncusHostSpec
		want string // "" when accepted
	}{
		{"remote", redisv1alpha1.IncusHostSpec{Remote: remote("https://10.0.0.5:8443")}, ""},
		{"socket and remote", redisv1alpha1.IncusHostSpec{Socket: "/run/incus.sock", Remote: remote("https://10.0.0.5:8443")}, "set spec.socket or spec.remote, not both"},
		{"plain http", redisv1alpha1.IncusHostSpec{Remote: remote("http://10.0.0.5:8443")}, "spec.remote.url"},
		{"cluster with fallback addresses", redisv1alpha1.IncusHostSpec{Remote: func() *redisv1alpha1.IncusHostRemote {
			r := remote("https://10.0.0.5:8443")
			r.FallbackURLs = []string{"https://10.0.0.6:8443", "https://10.0.0.7:8443"}
			return r
		}()}, ""},
		{"plain http fallback", redisv1alpha1.IncusHostSpec{Remote: func() *redisv1alpha1.IncusHostRemote {
			r := remote("https://10.0.0.5:8443")
			r.FallbackURLs = []string{"http://10.0.0.6:8443"}
			return r
		}()}, "spec.remote.fallbackURLs"},
		{"relative socket", redisv1alpha1.IncusHostSpec{Socket: "incus.sock"}, "spec.socket"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &redisv1alpha1.IncusHost{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("schema-%d", i)}, Spec: tc.spec}
			err := c.Create(ctx, h, client.DryRunAll)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a rejection saying %q", err, tc.want)
			}
		})
	}
}

// TestTLSSchema: a formation is created with TLS on or off and stays so,
// with the client-certificate requirement it was created with; the
// certificates' source and lifetimes may change (they are applied live).
func TestTLSSchema(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	tlsOn := func(clientAuth string) func(map[string]any, *unstructured.Unstructured) {
		return set("tls", map[string]any{"enabled": true, "clientAuth": clientAuth})
	}
	const (
		enabledFixed    = "spec.tls.enabled cannot be changed on a formation"
		clientAuthFixed = "spec.tls.clientAuth cannot be changed on a formation"
	)
	cases := []struct {
		name   string
		create func(map[string]any, *unstructured.Unstructured) // nil: TLS off
		change func(map[string]any, *unstructured.Unstructured)
		want   string // "" when the change must be accepted
	}{
		{"turning TLS on", nil, tlsOn("None"), enabledFixed},
		{"turning TLS on (enabled false before)", set("tls", map[string]any{"enabled": false}), set("tls.enabled", true), enabledFixed},
		{"turning TLS off", tlsOn("None"), set("tls.enabled", false), enabledFixed},
		{"removing spec.tls", tlsOn("None"), unset("tls"), enabledFixed},
		{"removing spec.tls with client certificates", tlsOn("Required"), unset("tls"), enabledFixed},
		{"requiring client certificates", tlsOn("None"), set("tls.clientAuth", "Required"), clientAuthFixed},
		{"no longer requiring client certificates", tlsOn("Required"), set("tls.clientAuth", "None"), clientAuthFixed},
		{"secretName set", tlsOn("Required"), set("tls.secretName", "cache-certs"), ""},
		{"secretName changed", func(s map[string]any, o *unstructured.Unstructured) {
			tlsOn("None")(s, o)
			set("tls.secretName", "cache-certs")(s, o)
		}, set("tls.secretName", "cache-certs-2"), ""},
		{"secretName removed", func(s map[string]any, o *unstructured.Unstructured) {
			tlsOn("None")(s, o)
			set("tls.secretName", "cache-certs")(s, o)
		}, unset("tls.secretName"), ""},
		{"certificateDuration", tlsOn("None"), set("tls.certificateDuration", "4320h"), ""},
		{"renewBefore", tlsOn("Required"), set("tls.renewBefore", "240h"), ""},
		{"renewBefore not below certificateDuration", tlsOn("None"), set("tls.renewBefore", "2160h"), "spec.tls.renewBefore must be shorter than spec.tls.certificateDuration"},
		{"certificateDuration not above renewBefore", tlsOn("None"), set("tls.certificateDuration", "720h"), "spec.tls.renewBefore must be shorter than spec.tls.certificateDuration"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := sampleFormation(t)
			obj.SetName(fmt.Sprintf("tls-change-%d", i))
			if tc.create != nil {
				tc.create(obj.Object["spec"].(map[string]any), obj)
			}
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("creating it: %v", err)
			}
			t.Cleanup(func() { _ = c.Delete(ctx, obj) })
			tc.change(obj.Object["spec"].(map[string]any), obj)
			err := c.Update(ctx, obj)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a rejection saying %q", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "no such key") || strings.Contains(err.Error(), "evaluating rule")) {
				t.Fatalf("a CEL rule failed to evaluate instead of validating: %v", err)
			}
		})
	}

	// Created with TLS on, and defaulted.
	for i, clientAuth := range []string{"None", "Required"} {
		obj := sampleFormation(t)
		obj.SetName(fmt.Sprintf("tls-create-%d", i))
		tlsOn(clientAuth)(obj.Object["spec"].(map[string]any), obj)
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("a formation with TLS on (clientAuth %s) was rejected: %v", clientAuth, err)
		}
		t.Cleanup(func() { _ = c.Delete(ctx, obj) })
		got, _, _ := unstructured.NestedMap(obj.Object, "spec", "tls")
		if fmt.Sprintf("%v %v %v", got["certificateDuration"], got["renewBefore"], got["clientAuth"]) != "2160h 720h "+clientAuth {
			t.Errorf("spec.tls defaulted to %v", got)
		}
	}
	defaulted := sampleFormation(t)
	defaulted.SetName("tls-create-defaults")
	set("tls", map[string]any{"enabled": true})(defaulted.Object["spec"].(map[string]any), defaulted)
	if err := c.Create(ctx, defaulted); err != nil {
		t.Fatalf("a formation with TLS on and nothing else was rejected: %v", err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, defaulted) })
	if got, _, _ := unstructured.NestedString(defaulted.Object, "spec", "tls", "clientAuth"); got != "None" {
		t.Errorf("spec.tls.clientAuth defaulted to %q", got)
	}

	// Refused at creation.
	for i, tc := range []struct {
		name   string
		mutate func(map[string]any, *unstructured.Unstructured)
		want   string
	}{
		{"renewBefore equal to certificateDuration", func(s map[string]any, o *unstructured.Unstructured) {
			tlsOn("None")(s, o)
			set("tls.certificateDuration", "720h")(s, o)
			set("tls.renewBefore", "720h")(s, o)
		}, "spec.tls.renewBefore must be shorter than spec.tls.certificateDuration"},
		{"renewBefore above the default certificateDuration", func(s map[string]any, o *unstructured.Unstructured) {
			tlsOn("None")(s, o)
			set("tls.renewBefore", "3000h")(s, o)
		}, "spec.tls.renewBefore must be shorter than spec.tls.certificateDuration"},
		{"clientAuth Optional", tlsOn("Optional"), "spec.tls.clientAuth"},
		{"clientAuth lower-case", tlsOn("required"), "spec.tls.clientAuth"},
		{"secretName not a Secret name", func(s map[string]any, o *unstructured.Unstructured) {
			tlsOn("None")(s, o)
			set("tls.secretName", "Cache_Certs")(s, o)
		}, "spec.tls.secretName"},
	} {
		t.Run("create with "+tc.name, func(t *testing.T) {
			obj := sampleFormation(t)
			obj.SetName(fmt.Sprintf("tls-bad-%d", i))
			tc.mutate(obj.Object["spec"].(map[string]any), obj)
			err := c.Create(ctx, obj)
			if err == nil {
				_ = c.Delete(ctx, obj)
				t.Fatalf("accepted; want a rejection saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejected with %q; want %q", err, tc.want)
			}
		})
	}
}
