package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// TestLeastPrivilege runs on one formation, in turn: what the connection
// Secret's user may and may not do (go-redis and redis-py), a weak password
// refused without touching anything, backend rules that redis-server
// refuses, a sentinel majority told to monitor an address that is no
// member, and the rotation of the operator's internal credentials under a
// writer. After each the formation is whole again, and no step causes a
// failover.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	stack(t)
	decoy := reserveAddress(t)
	f := newFormation(t, "e2elp-priv", formationOpts{password: strongPassword(t), sentinelPass: strongPassword(t)})
	start := time.Now()
	cur := waitReady(t, f, 3*time.Minute)
	t.Logf("apply -> Ready in %s", time.Since(start).Round(10*time.Millisecond))
	conds := recordConditions(t, f)
	failovers := cur.Status.Failovers
	checkConnectionSecret(t, f, connectionData(t, f))
	secrets := formationSecrets(t, f)

	t.Run("default user disabled", func(t *testing.T) { testDefaultUserDisabled(t, f) })
	t.Run("backend rights", func(t *testing.T) { testBackendRights(t, f) })
	t.Run("weak password refused, nothing changed", func(t *testing.T) { testWeakPasswordChangesNothing(t, f) })
	t.Run("backend rules redis-server refuses", func(t *testing.T) { testRefusedBackendRules(t, f) })
	t.Run("untrusted master", func(t *testing.T) { testUntrustedMaster(t, f, conds, decoy) })
	t.Run("internal credentials rotation", func(t *testing.T) {
		waitReady(t, f, time.Minute)
		from := time.Now()
		w := startReloadingWriter(t, f, "priv:rot:")
		secrets = append(secrets, rotateInternalCredentials(t, f)...)
		writerPhase(t, w, fmt.Sprintf("internal credentials rotation (%s)", time.Since(from).Round(time.Second)))
		finishWriter(t, f, w, nil)
		conds.assertStayedReady(t, from, "during the rotation of the internal credentials")
	})

	waitReady(t, f, 2*time.Minute)
	eventually(t, time.Minute, "the formation whole", func() (bool, string) { return formationHealthy(t, f) })
	if cur = get(t, f); cur.Status.Failovers != failovers {
		t.Errorf("%d failovers during the test (lastFailover %+v)", cur.Status.Failovers-failovers, cur.Status.LastFailover)
	}
	assertNoSecretInLogs(t, append(secrets, formationSecrets(t, f)...)...)
}

// testDefaultUserDisabled: no connection is served without a user name,
// on any redis-server or sentinel, not even with a member's password.
func testDefaultUserDisabled(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
	cur := get(t, f)
	pw := secretValue(t, f.Namespace, cur.Spec.Auth.PasswordSecretRef.Name)
	for _, m := range cur.Status.Members {
		for _, port := range []int32{redisPort(cur), sentinelPort(cur)} {
			for _, c := range []*redis.Client{redisAs(m.Address, port, "", "", nil), redisAs(m.Address, port, "", pw, nil), redisAs(m.Address, port, acl.DefaultUser, pw, nil)} {
				err := c.Ping(context.Background()).Err()
				_ = c.Close()
				if err == nil || !(strings.Contains(err.Error(), "NOAUTH") || isWrongPass(err)) {
					t.Errorf("%s:%d serves the default user: PING = %v", m.Name, port, err)
				}
			}
		}
	}
}

// pyResult is one probe's outcome in testdata/backend_probes.py.
type pyResult struct {
	OK         bool   `json:"ok"`
	ErrorClass string `json:"error_class"`
	Error      string `json:"error"`
	Detail     string `json:"detail"`
}

// runPythonProbes runs testdata/backend_probes.py (redis-py, Sentinel
// discovery) with the connection Secret's values in its environment: the
// probes named in only, or all of them.
func runPythonProbes(ctx context.Context, data map[string][]byte, prefix string, only ...string) (map[string]pyResult, error) {
	const python = "/usr/bin/python3"
	if out, err := exec.CommandContext(ctx, python, "-c", "import redis, redis.sentinel; assert redis.__version__.startswith('4.'), redis.__version__").CombinedOutput(); err != nil {
		return nil, &testenv.UnavailableError{Err: fmt.Errorf("%s with redis-py 4 (Debian's python3-redis, `make test-deps`): %v %s", python, err, strings.TrimSpace(string(out)))}
	}
	cmd := exec.CommandContext(ctx, python, append([]string{filepath.Join("testdata", "backend_probes.py")}, only...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PROBE_PREFIX=" + prefix}
	for k, v := range data {
		cmd.Env = append(cmd.Env, k+"="+string(v))
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("backend_probes.py: %v\n%s", err, stderr.String())
	}
	res := map[string]pyResult{}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("backend_probes.py printed %q: %v", out, err)
	}
	return res, nil
}

// privilegeRow is one command a backend sends with the connection
// Secret's credentials.
type privilegeRow struct {
	name string // also the probe's name in backend_probes.py
	// allowed says the command must work, else it must be refused (NOPERM).
	allowed bool
	// sentinel: sent to a sentinel with REDIS_SENTINEL_USERNAME/PASSWORD,
	// else to the master found by Sentinel discovery.
	sentinel bool
	// run sends it through go-redis (c: the FailoverClient, s: a sentinel).
	run func(ctx context.Context, c *redis.Client, s *redis.SentinelClient) error
	// dryRun are the command's arguments for ACL DRYRUN, run by the admin
	// user: the ACL itself must answer as the row says.
	dryRun []any
	// otherRefusal is another refusal that comes before the ACL's: Redis
	// 7.0 refuses DEBUG to every user while enable-debug-command is "no"
	// (its default), before it checks the ACL; ACL DRYRUN shows that the
	// ACL refuses it too.
	otherRefusal string
}

// noSuchMaster is the master name the SENTINEL rows use: were one wrongly
// allowed, it would change nothing.
const noSuchMaster = "e2elp-no-such-master"

func privilegeRows(f *redisv1alpha1.RedisSentinelFormation, prefix string) []privilegeRow {
	name := masterName(f)
	script := "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
	return []privilegeRow{
		{name: "SENTINEL discovery", allowed: true, sentinel: true, dryRun: []any{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", name},
			run: func(ctx context.Context, _ *redis.Client, s *redis.SentinelClient) error {
				if err := s.GetMasterAddrByName(ctx, name).Err(); err != nil {
					return err
				}
				if err := s.Replicas(ctx, name).Err(); err != nil {
					return err
				}
				return s.Sentinels(ctx, name).Err()
			}},
		{name: "SET", allowed: true, dryRun: []any{"SET", prefix + "set", "v"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				return c.Set(ctx, prefix+"set", "v-set", 0).Err()
			}},
		{name: "GET", allowed: true, dryRun: []any{"GET", prefix + "get"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				if err := c.Set(ctx, prefix+"get", "v-get", 0).Err(); err != nil {
					return err
				}
				if v, err := c.Get(ctx, prefix+"get").Result(); err != nil || v != "v-get" {
					return fmt.Errorf("GET = %q, %w", v, err)
				}
				return nil
			}},
		{name: "EVAL", allowed: true, dryRun: []any{"EVAL", script, 1, prefix + "eval", "v"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				if v, err := c.Eval(ctx, script, []string{prefix + "eval"}, "v-eval").Text(); err != nil || v != "v-eval" {
					return fmt.Errorf("EVAL = %q, %w", v, err)
				}
				// EVALSHA, as go-redis's Script.Run sends it (the rate
				// limiter's way).
				if v, err := redis.NewScript(script).Run(ctx, c, []string{prefix + "eval"}, "v-evalsha").Text(); err != nil || v != "v-evalsha" {
					return fmt.Errorf("EVALSHA = %q, %w", v, err)
				}
				return nil
			}},
		{name: "PUBLISH/SUBSCRIBE", allowed: true, dryRun: []any{"PUBLISH", prefix + "channel", "hello"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				ps := c.Subscribe(ctx, prefix+"channel")
				defer ps.Close()
				if _, err := ps.Receive(ctx); err != nil {
					return fmt.Errorf("SUBSCRIBE: %w", err)
				}
				if n, err := c.Publish(ctx, prefix+"channel", "hello").Result(); err != nil || n < 1 {
					return fmt.Errorf("PUBLISH reached %d: %w", n, err)
				}
				msg, err := ps.ReceiveMessage(ctx)
				if err != nil || msg.Payload != "hello" {
					return fmt.Errorf("received %v: %w", msg, err)
				}
				return nil
			}},
		{name: "CONFIG SET", dryRun: []any{"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				return c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err()
			}},
		{name: "FLUSHALL", dryRun: []any{"FLUSHALL"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				return c.Do(ctx, "FLUSHALL", "E2ELP-NOT-A-MODE").Err()
			}},
		{name: "SHUTDOWN", dryRun: []any{"SHUTDOWN"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				return c.Do(ctx, "SHUTDOWN", "ABORT").Err()
			}},
		{name: "REPLICAOF", dryRun: []any{"REPLICAOF", "NO", "ONE"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				return c.Do(ctx, "REPLICAOF", "NO", "ONE").Err()
			}},
		{name: "ACL SETUSER", dryRun: []any{"ACL", "SETUSER", "e2elp-probe"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				return c.Do(ctx, "ACL", "SETUSER", "e2elp-probe").Err()
			}},
		{name: "DEBUG", dryRun: []any{"DEBUG", "HELP"}, otherRefusal: "DEBUG command not allowed",
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				return c.Do(ctx, "DEBUG", "HELP").Err()
			}},
		{name: "MONITOR", dryRun: []any{"MONITOR"},
			run: func(ctx context.Context, c *redis.Client, _ *redis.SentinelClient) error {
				// On a connection of its own, closed either way.
				conn := c.Conn()
				defer conn.Close()
				return conn.Do(ctx, "MONITOR").Err()
			}},
		{name: "SENTINEL SET", sentinel: true, dryRun: []any{"SENTINEL", "SET", noSuchMaster, "down-after-milliseconds", "5000"},
			run: func(ctx context.Context, _ *redis.Client, s *redis.SentinelClient) error {
				return s.Set(ctx, noSuchMaster, "down-after-milliseconds", "5000").Err()
			}},
		{name: "SENTINEL REMOVE", sentinel: true, dryRun: []any{"SENTINEL", "REMOVE", noSuchMaster},
			run: func(ctx context.Context, _ *redis.Client, s *redis.SentinelClient) error {
				return s.Remove(ctx, noSuchMaster).Err()
			}},
		{name: "SENTINEL MONITOR", sentinel: true, dryRun: []any{"SENTINEL", "MONITOR", noSuchMaster, "127.0.0.1", "6379", "0"},
			run: func(ctx context.Context, _ *redis.Client, s *redis.SentinelClient) error {
				// Quorum 0 is invalid: allowed, it would still create nothing.
				return s.Monitor(ctx, noSuchMaster, "127.0.0.1", "6379", "0").Err()
			}},
		{name: "SENTINEL FAILOVER", sentinel: true, dryRun: []any{"SENTINEL", "FAILOVER", noSuchMaster},
			run: func(ctx context.Context, _ *redis.Client, s *redis.SentinelClient) error {
				return s.Failover(ctx, noSuchMaster).Err()
			}},
		{name: "SENTINEL RESET", sentinel: true, dryRun: []any{"SENTINEL", "RESET", noSuchMaster + "*"},
			run: func(ctx context.Context, _ *redis.Client, s *redis.SentinelClient) error {
				return s.Reset(ctx, noSuchMaster+"*").Err()
			}},
	}
}

// testBackendRights: with the connection Secret's credentials, through
// go-redis's FailoverClient (internal/redisclient, as backends build it) and
// through redis-py's Sentinel client, the data commands work by Sentinel
// discovery and every administrative command is refused, on redis-servers
// and sentinels; the ACL agrees (ACL DRYRUN). The formation stays whole.
func testBackendRights(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
	ctx := context.Background()
	cur := get(t, f)
	data := connectionData(t, f)
	c, err := redisclient.FromSecretData(data, redisclient.Options{})
	if err != nil {
		t.Fatalf("client from the connection Secret: %v", err)
	}
	defer c.Close()
	// A key that must outlive the probes (FLUSHALL is refused).
	if err := c.Set(ctx, "priv:sentry", "still here", 0).Err(); err != nil {
		t.Fatalf("SET through the connection Secret: %v", err)
	}
	sentinels := strings.Split(string(data["REDIS_SENTINEL_ADDRS"]), ",")
	host, port, _ := net.SplitHostPort(sentinels[0])
	portN, _ := strconv.Atoi(port)
	s := sentinelAs(host, int32(portN), string(data["REDIS_SENTINEL_USERNAME"]), string(data["REDIS_SENTINEL_PASSWORD"]), nil)
	defer s.Close()

	// redis-py runs its probes beside the go-redis rows.
	type pyOutcome struct {
		res map[string]pyResult
		err error
	}
	py := make(chan pyOutcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		res, err := runPythonProbes(ctx, data, "priv:py:")
		py <- pyOutcome{res, err}
	}()
	var pyRes pyOutcome
	pyOnce := sync.OnceFunc(func() { pyRes = <-py })

	admin := adminRedis(t, cur, cur.Status.Master.Address)
	defer admin.Close()
	adminS := redisAs(host, int32(portN), acl.AdminUser, adminCreds(t, cur).Password, nil)
	defer adminS.Close()
	user := backendUser(cur)

	for _, row := range privilegeRows(cur, "priv:go:") {
		t.Run(row.name, func(t *testing.T) {
			want := "refused (NOPERM)"
			if row.allowed {
				want = "allowed"
			}
			t.Run("go-redis", func(t *testing.T) {
				err := row.run(ctx, c, s)
				switch {
				case row.allowed && err != nil:
					t.Errorf("want %s, got %v", want, err)
				case !row.allowed && row.otherRefusal != "" && err != nil && strings.Contains(err.Error(), row.otherRefusal):
					t.Logf("refused before the ACL check: %v", err)
				case !row.allowed && !isRefused(err):
					t.Errorf("want %s, got %v", want, err)
				}
			})
			t.Run("redis-py", func(t *testing.T) {
				pyOnce()
				if pyRes.err != nil {
					var unavailable *testenv.UnavailableError
					if errors.As(pyRes.err, &unavailable) {
						testenv.Unavailable(t, "redis-py", pyRes.err)
					}
					t.Fatal(pyRes.err)
				}
				r, ok := pyRes.res[row.name]
				switch {
				case !ok:
					t.Fatalf("backend_probes.py has no probe %q", row.name)
				case row.allowed && !r.OK:
					t.Errorf("want %s, got %s: %s", want, r.ErrorClass, r.Error)
				case !row.allowed && r.OK:
					t.Errorf("want %s, the command was allowed: %s", want, r.Detail)
				case !row.allowed && row.otherRefusal != "" && strings.Contains(r.Error, row.otherRefusal):
					t.Logf("refused before the ACL check: %s: %s", r.ErrorClass, r.Error)
				case !row.allowed && r.ErrorClass != "NoPermissionError":
					t.Errorf("want %s, got %s: %s", want, r.ErrorClass, r.Error)
				}
			})
			t.Run("ACL DRYRUN", func(t *testing.T) {
				on := admin
				if row.sentinel {
					on = adminS
				}
				reply, err := on.Do(ctx, append([]any{"ACL", "DRYRUN", user}, row.dryRun...)...).Text()
				switch {
				case err != nil:
					t.Errorf("ACL DRYRUN: %v", err)
				case row.allowed && reply != "OK":
					t.Errorf("ACL DRYRUN %s %v: %s", user, row.dryRun, reply)
				case !row.allowed && !strings.Contains(reply, "no permissions"):
					t.Errorf("ACL DRYRUN %s %v allows it: %s", user, row.dryRun, reply)
				}
			})
		})
	}

	// Nothing the probes sent changed the formation: the key is there, the
	// formation is whole, a write reaches both replicas.
	if v, err := c.Get(ctx, "priv:sentry").Result(); err != nil || v != "still here" {
		t.Errorf("the key written before the probes: %q, %v", v, err)
	}
	eventually(t, time.Minute, "the formation whole after the probes", func() (bool, string) { return formationHealthy(t, f) })
	if err := c.Set(ctx, "priv:after", "ok", 0).Err(); err != nil {
		t.Fatalf("SET after the probes: %v", err)
	}
	if n, err := c.Wait(ctx, len(cur.Status.Members)-1, 5*time.Second).Result(); err != nil || int(n) != len(cur.Status.Members)-1 {
		t.Errorf("WAIT after the probes: %d replicas, %v", n, err)
	}
	waitReady(t, f, time.Minute)
}

// testWeakPasswordChangesNothing: a weak password in the backend Secret of
// a production formation is refused (SecretsValid=False, an Event); the
// members, the connection Secret and the old password stay as they were.
// Putting the password back makes the Secret valid again.
func testWeakPasswordChangesNothing(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
	cur := get(t, f)
	if cur.Spec.Environment != redisv1alpha1.EnvironmentProduction {
		t.Fatalf("spec.environment defaulted to %q, want production", cur.Spec.Environment)
	}
	secretName := cur.Spec.Auth.PasswordSecretRef.Name
	oldPassword := secretValue(t, f.Namespace, secretName)
	before := runIDs(t, cur)
	conn := string(connectionData(t, f)["REDIS_URL"])

	weak := "aaaaaaaaaaaaaaaaaaaa1"
	setSecretValue(t, f.Namespace, secretName, weak)
	cur = waitCondition(t, f, time.Minute, redisv1alpha1.ConditionSecretsValid, metav1.ConditionFalse, controllers.ReasonPasswordRefused)
	t.Logf("SecretsValid=False %s: %s", controllers.ReasonPasswordRefused, conditionMessage(cur, redisv1alpha1.ConditionSecretsValid))
	if strings.Contains(conditionMessage(cur, redisv1alpha1.ConditionSecretsValid), weak) {
		t.Errorf("the condition quotes the refused password")
	}
	eventually(t, 30*time.Second, "an Event "+controllers.ReasonPasswordRefused, func() (bool, string) {
		return len(events(t, f, controllers.ReasonPasswordRefused)) > 0, "none"
	})
	// Give the operator a few passes to do something it must not.
	time.Sleep(3 * time.Second)
	cur = get(t, f)
	if ok, why := authEverywhere(cur, false, backendUser(cur), oldPassword, true); !ok {
		t.Errorf("the old password stopped working: %s", why)
	}
	if ok, why := authEverywhere(cur, false, backendUser(cur), weak, false); !ok {
		t.Errorf("the weak password was applied: %s", why)
	}
	if string(connectionData(t, f)["REDIS_URL"]) != conn {
		t.Errorf("the connection Secret changed")
	}
	if cur.Status.PasswordRotation != nil {
		t.Errorf("a rotation started: %+v", cur.Status.PasswordRotation)
	}
	if after := runIDs(t, cur); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("servers restarted:\nbefore %v\nafter  %v", before, after)
	}

	setSecretValue(t, f.Namespace, secretName, oldPassword)
	waitCondition(t, f, time.Minute, redisv1alpha1.ConditionSecretsValid, metav1.ConditionTrue, "")
	waitReady(t, f, time.Minute)
	if cur = get(t, f); cur.Status.PasswordRotation != nil {
		t.Errorf("putting the same password back started a rotation: %+v", cur.Status.PasswordRotation)
	}
}

// testRefusedBackendRules: rules that pass the API server but that
// redis-server refuses (an unknown command) are reported (Degraded,
// CredentialsRefused) and the previous rules stay in force; fixing the
// spec applies the new rules live.
func testRefusedBackendRules(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
	ctx := context.Background()
	cur := get(t, f)
	user := backendUser(cur)
	rulesOf := func(cur *redisv1alpha1.RedisSentinelFormation) map[string]string {
		out := map[string]string{}
		for _, m := range cur.Status.Members {
			r := adminRedis(t, cur, m.Address)
			got, err := r.Do(ctx, "ACL", "GETUSER", user).Result()
			_ = r.Close()
			if err != nil {
				t.Fatalf("ACL GETUSER %s on %s: %v", user, m.Name, err)
			}
			fields := map[string]any{}
			switch v := got.(type) {
			case map[any]any: // RESP3
				for k, val := range v {
					fields[fmt.Sprint(k)] = val
				}
			case []any: // RESP2
				for i := 0; i+1 < len(v); i += 2 {
					fields[fmt.Sprint(v[i])] = v[i+1]
				}
			default:
				t.Fatalf("ACL GETUSER %s on %s: unexpected reply %T", user, m.Name, got)
			}
			for k, v := range fields {
				if k != "passwords" && k != "flags" {
					out[m.Name+" "+k] = fmt.Sprint(v)
				}
			}
		}
		return out
	}
	before := rulesOf(cur)
	beforeStatus := slices.Clone(cur.Status.BackendRules)
	if len(beforeStatus) == 0 {
		t.Fatalf("status.backendRules is empty on a Ready formation")
	}
	c := connectionClient(t, f)
	defer c.Close()

	bad := append(append([]string(nil), acl.DefaultBackendRules...), "+nosuchcommand")
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Auth.BackendUser.Rules = bad })
	cur = waitCondition(t, f, time.Minute, redisv1alpha1.ConditionDegraded, metav1.ConditionTrue, controllers.ReasonCredentialsRefused)
	t.Logf("Degraded %s: %s", controllers.ReasonCredentialsRefused, conditionMessage(cur, redisv1alpha1.ConditionDegraded))
	if !slices.Equal(cur.Status.BackendRules, beforeStatus) {
		t.Errorf("status.backendRules = %q, want the previous %q", cur.Status.BackendRules, beforeStatus)
	}
	if after := rulesOf(cur); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the backend user's rules changed although redis-server refused the new ones:\nbefore %v\nafter  %v", before, after)
	}
	if err := c.Set(ctx, "priv:rules", "ok", 0).Err(); err != nil {
		t.Errorf("the backend cannot SET with the previous rules: %v", err)
	}
	if v, err := c.Get(ctx, "priv:rules").Result(); err != nil || v != "ok" {
		t.Errorf("the backend cannot GET with the previous rules: %q %v", v, err)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); !isRefused(err) {
		t.Errorf("CONFIG SET with the previous rules: %v, want NOPERM", err)
	}

	// Fixed: a narrowing redis-server accepts is applied on every member.
	fixed := append(append([]string(nil), acl.DefaultBackendRules...), "-lpush")
	update(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Auth.BackendUser.Rules = fixed })
	cur = readyAfter(t, f, 2*time.Minute)
	waitCondition(t, f, 30*time.Second, redisv1alpha1.ConditionDegraded, metav1.ConditionFalse, "")
	if !slices.Equal(cur.Status.BackendRules, fixed) {
		t.Errorf("status.backendRules = %q, want %q", cur.Status.BackendRules, fixed)
	}
	eventually(t, 30*time.Second, "LPUSH refused to the backend on every member", func() (bool, string) {
		for _, m := range cur.Status.Members {
			r := adminRedis(t, cur, m.Address)
			reply, err := r.Do(ctx, "ACL", "DRYRUN", user, "LPUSH", "k", "v").Text()
			_ = r.Close()
			if err != nil || !strings.Contains(reply, "no permissions") {
				return false, fmt.Sprintf("%s: %q %v", m.Name, reply, err)
			}
		}
		return true, ""
	})
	if err := c.LPush(ctx, "priv:list", "v").Err(); !isRefused(err) {
		t.Errorf("LPUSH after narrowing: %v, want NOPERM", err)
	}
	if err := c.Set(ctx, "priv:rules", "ok2", 0).Err(); err != nil {
		t.Errorf("SET after narrowing: %v", err)
	}
}

// reserveAddress returns an address of the lab bridge's subnet that no
// instance has, reserved for the test by an empty container that is never
// started (Incus gives its pinned address to no one else): traffic to it
// reaches nothing, on a network this run created.
func reserveAddress(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("incus", "network", "get", "rsfbr0", "ipv4.address").Output()
	if err != nil {
		t.Fatalf("reading the bridge's address: %v", err)
	}
	gw, subnet, err := net.ParseCIDR(strings.TrimSpace(string(out)))
	if err != nil || gw.To4() == nil {
		t.Fatalf("bridge address %q: %v", out, err)
	}
	ones, bits := subnet.Mask.Size()
	size := uint32(1) << (bits - ones)
	base := binary.BigEndian.Uint32(subnet.IP.To4())
	for attempt := 0; attempt < 10; attempt++ {
		n := size/2 + rand.Uint32N(size/2-2) // the upper half, below broadcast
		var ip [4]byte
		binary.BigEndian.PutUint32(ip[:], base+n)
		candidate := net.IP(ip[:]).String()
		if candidate == gw.String() || addressInUse(t, candidate, "") {
			continue
		}
		name := uniqueName("e2elp-decoy")
		if out, err := exec.Command("incus", "init", "--empty", name, "-p", labProfile, "-d", "eth0,ipv4.address="+candidate).CombinedOutput(); err != nil {
			t.Fatalf("creating the address reservation %s: %v %s", name, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("incus", "delete", "--force", name).Run() })
		if addressInUse(t, candidate, name) { // leased a moment ago
			_ = exec.Command("incus", "delete", "--force", name).Run()
			continue
		}
		t.Logf("non-member address %s reserved by the stopped, empty container %s", candidate, name)
		return candidate
	}
	t.Fatal("found no free address on the bridge")
	return ""
}

// addressInUse says whether an instance other than except has or is
// pinned to address.
func addressInUse(t *testing.T, address, except string) bool {
	t.Helper()
	out, err := exec.Command("incus", "query", "/1.0/instances?recursion=2").Output()
	if err != nil {
		t.Fatalf("listing instances: %v", err)
	}
	var instances []struct {
		Name            string                       `json:"name"`
		ExpandedDevices map[string]map[string]string `json:"expanded_devices"`
		State           *struct {
			Network map[string]struct {
				Addresses []struct {
					Address string `json:"address"`
				} `json:"addresses"`
			} `json:"network"`
		} `json:"state"`
	}
	if err := json.Unmarshal(out, &instances); err != nil {
		t.Fatalf("listing instances: %v", err)
	}
	for _, in := range instances {
		if in.Name == except {
			continue
		}
		for _, d := range in.ExpandedDevices {
			if d["ipv4.address"] == address {
				return true
			}
		}
		if in.State != nil {
			for _, nic := range in.State.Network {
				for _, a := range nic.Addresses {
					if a.Address == address {
						return true
					}
				}
			}
		}
	}
	return false
}

// testUntrustedMaster: the admin user (as anyone with the old all-powerful
// password could have) tells a majority of the sentinels to monitor an
// address that is no member. No member ever replicates from it (INFO
// replication of every member polled throughout); the formation goes
// Degraded (UntrustedMaster, naming the address) with an Event; the
// sentinels are re-pointed at the real master and the formation is Ready,
// with the same master.
func testUntrustedMaster(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, conds *conditionLog, decoy string) {
	ctx := context.Background()
	cur := get(t, f)
	name, master := masterName(cur), cur.Status.Master.Address
	admin := adminCreds(t, cur)

	// Watch every member's replication until the end.
	type violation struct{ member, detail string }
	var (
		mu         sync.Mutex
		violations []violation
		polls      int
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		clients := map[string]*redis.Client{}
		for _, m := range cur.Status.Members {
			clients[m.Name] = redisAs(m.Address, redisPort(cur), admin.Username, admin.Password, admin.TLS.Config())
		}
		defer func() {
			for _, c := range clients {
				_ = c.Close()
			}
		}()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for member, c := range clients {
				info, err := c.InfoMap(ctx, "replication").Result()
				if err != nil {
					continue
				}
				r := info["Replication"]
				mu.Lock()
				polls++
				if r["master_host"] == decoy || (r["role"] == "slave" && r["master_host"] != master) {
					violations = append(violations, violation{member, fmt.Sprintf("role %s master_host %s link %s", r["role"], r["master_host"], r["master_link_status"])})
				}
				mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	defer func() { close(stop); <-watched }()

	// The attack, on a majority at once: each sentinel forgets the master
	// and monitors the decoy under the same name.
	majority := cur.Status.Members[:len(cur.Status.Members)/2+1]
	attackedAt := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(majority))
	for i, m := range majority {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := redisAs(m.Address, sentinelPort(cur), admin.Username, admin.Password, admin.TLS.Config())
			defer s.Close()
			for try := 0; try < 3; try++ {
				pipe := s.Pipeline()
				remove := pipe.Do(ctx, "SENTINEL", "REMOVE", name)
				monitor := pipe.Do(ctx, "SENTINEL", "MONITOR", name, decoy, redisPort(cur), cur.Spec.Quorum)
				_, _ = pipe.Exec(ctx)
				if errs[i] = monitor.Err(); errs[i] == nil {
					return
				}
				errs[i] = fmt.Errorf("sentinel %s: REMOVE %v, MONITOR %v", m.Name, remove.Err(), monitor.Err())
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("pointing the sentinels at %s: %v", decoy, err)
	}

	var degradedAfter time.Duration
	eventually(t, time.Minute, "Degraded "+controllers.ReasonUntrustedMaster+" naming "+decoy, func() (bool, string) {
		seen, ok := conds.find(attackedAt, func(s seenCondition) bool {
			return s.Type == redisv1alpha1.ConditionDegraded && s.Status == "True" && s.Reason == controllers.ReasonUntrustedMaster && strings.Contains(s.Message, decoy)
		})
		degradedAfter = seen.At.Sub(attackedAt)
		return ok, "conditions seen:\n" + conds.describe(attackedAt)
	})
	eventually(t, 2*time.Minute, "every sentinel monitors the real master again", func() (bool, string) { return formationHealthy(t, f) })
	repairedAfter := time.Since(attackedAt)
	// The condition may last a single pass; the Event is what remains, so
	// it must say which address the sentinels were pointed at.
	// (Checked without stopping the test, so that the rest is seen too.)
	eventNamed := func() (bool, []string) {
		var related []string
		for _, e := range allEvents(t, f) {
			if strings.Contains(e.Message, decoy) {
				return true, nil
			}
			if e.Reason == controllers.ReasonUntrustedMaster || strings.Contains(e.Message, "no member") {
				related = append(related, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message))
			}
		}
		return false, related
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		ok, related := eventNamed()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no Event names the non-member address %s; related Events: %q", decoy, related)
			break
		}
	}
	cur = waitReady(t, f, time.Minute)
	time.Sleep(2 * time.Second) // a little longer for the replication watch

	t.Logf("attack -> Degraded %s seen %s, -> every sentinel repaired %s; conditions seen:\n%s", controllers.ReasonUntrustedMaster, degradedAfter.Round(time.Millisecond), repairedAfter.Round(time.Millisecond), conds.describe(attackedAt))
	if cur.Status.Master == nil || cur.Status.Master.Address != master {
		t.Errorf("the master moved: %+v (was %s)", cur.Status.Master, master)
	}
	for _, m := range cur.Status.Members {
		if strings.Contains(m.Address, decoy) {
			t.Errorf("member %s has the decoy's address", m.Name)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d INFO replication polls of the members", polls)
	if polls == 0 {
		t.Errorf("no INFO replication poll answered")
	}
	if len(violations) > 0 {
		t.Errorf("%d polls saw a member following another master, e.g. %+v", len(violations), violations[0])
	}
}
