package controllers

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
)

// incusName is what Incus accepts as an instance name (a hostname: at most
// 63 letters, digits and hyphens, no hyphen at either end, not a number),
// narrowed to what the operator creates: lower case, a letter first.
var incusName = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func TestInstanceName(t *testing.T) {
	long := func(c string, n int) string { return strings.Repeat(c, n) }
	cases := []struct {
		namespace, name string
		index           int
		want            string // "" when only the properties are checked
	}{
		{"apps", "cache", 1, "cache-apps-b4cc7e0f-1"},
		{"apps", "cache", 7, "cache-apps-b4cc7e0f-7"},
		{"default", "cache", 1, ""},
		// Namespaces may start with a digit; the name comes first.
		{"1team", "cache", 3, ""},
		// Hyphens cannot separate the parts: the hash does.
		{"a-b", "c", 1, ""},
		{"a", "b-c", 1, ""},
		{"a--b", "cache", 1, ""},
		// Longest namespace (63) and name (55, the schema's limit): the
		// readable part is cut, the hash and index stay.
		{long("n", 63), "cache", 1, "cache-" + long("n", 46) + "-1872ef68-1"},
		{"apps", "c" + long("x", 54), 1, ""},
		{long("n", 63), "c" + long("x", 54), 7, ""},
		{long("n", 63), "c" + long("x", 53) + "y", 7, ""},
		// A cut that would end the readable part with a hyphen.
		{"n" + long("-", 40) + "n", "c" + long("x", 9), 2, "cxxxxxxxxx-n-eeaee13f-2"},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		got := InstanceName(tc.namespace, tc.name, tc.index)
		key := tc.namespace + "/" + tc.name
		if tc.want != "" && got != tc.want {
			t.Errorf("%s member %d: %q, want %q", key, tc.index, got, tc.want)
		}
		if !incusName.MatchString(got) || len(got) > 63 {
			t.Errorf("%s member %d: %q is no valid instance name", key, tc.index, got)
		}
		if got != InstanceName(tc.namespace, tc.name, tc.index) {
			t.Errorf("%s member %d: not deterministic", key, tc.index)
		}
		if !strings.HasSuffix(got, "-"+string(rune('0'+tc.index))) {
			t.Errorf("%s member %d: %q does not end with the index", key, tc.index, got)
		}
		if len(tc.namespace)+len(tc.name) < 40 && !strings.HasPrefix(got, tc.name+"-"+tc.namespace+"-") {
			t.Errorf("%s member %d: %q does not read as name and namespace", key, tc.index, got)
		}
		// Every member of a formation shares the prefix.
		if a, b := InstanceName(tc.namespace, tc.name, 1), InstanceName(tc.namespace, tc.name, 3); a[:len(a)-1] != b[:len(b)-1] {
			t.Errorf("%s: members 1 and 3 differ beyond the index: %q %q", key, a, b)
		}
		if other, ok := seen[got]; ok && other != key {
			t.Errorf("%s and %s share the instance name %q", key, other, got)
		}
		seen[got] = key
	}
}

// TestSameNameInTwoNamespaces: two formations called cache, in two
// namespaces of one Incus, both become Ready, each with its own instances.
func TestSameNameInTwoNamespaces(t *testing.T) {
	other := newFormation(testName)
	other.Namespace, other.UID = "other", "uid-other-cache"
	otherKey := client.ObjectKeyFromObject(other)
	secret := func(name, password string) *corev1.Secret {
		s := passwordSecret(name, password)
		s.Namespace = other.Namespace
		return s
	}
	e := newEnv(t, newFormation(testName), passwordSecret(redisSecretName, testPassword), passwordSecret(sentinelSecretName, testSentinelPassword),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other.Namespace}}, other, secret(redisSecretName, testPassword), secret(sentinelSecretName, testSentinelPassword))
	r := e.newReconciler()
	for range 3 { // interleaved, as the workqueue would run them
		for _, key := range []types.NamespacedName{testKey, otherKey} {
			if _, err := e.reconcile(r, key); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.converge(r, testKey, 40)
	e.converge(r, otherKey, 40)

	names := map[string]types.UID{}
	for _, key := range []types.NamespacedName{testKey, otherKey} {
		f := e.formation(key)
		insts := e.instances(f)
		if len(insts) != 3 {
			t.Fatalf("%s owns %d instances", key, len(insts))
		}
		for _, m := range f.Status.Members {
			inst := insts[m.Name]
			if m.Instance != inst.Name || inst.Name != InstanceName(key.Namespace, key.Name, int(inst.Config[keyMember][0]-'0')) {
				t.Errorf("%s member %s: instance %q, status records %q", key, m.Name, inst.Name, m.Instance)
			}
			if owner, dup := names[inst.Name]; dup {
				t.Errorf("instance %s serves %s and %s", inst.Name, owner, f.UID)
			}
			names[inst.Name] = f.UID
		}
	}
	if got := len(e.incus.Names()); got != 6 {
		t.Fatalf("%d instances in Incus, want 6: %v", got, e.incus.Names())
	}
}

// TestLegacyInstancesKept: a formation whose members were created as
// "<name>-<n>" (before InstanceName) keeps them, data and all: they are
// matched by their ownership keys, never recreated; only a member that is
// lost is created again, under the new name.
func TestLegacyInstancesKept(t *testing.T) {
	e := standardEnv(t)
	f := e.formation(testKey)
	for i := 1; i <= 3; i++ {
		spec := instanceSpec(f, i, "")
		spec.Name = memberName(f, i)
		if err := e.incus.AddInstance(spec, "Running"); err != nil {
			t.Fatal(err)
		}
	}
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	f = e.formation(testKey)
	if n := e.incus.Calls()[incusfake.CreateInstance]; n != 0 {
		t.Fatalf("%d instances created beside the legacy ones: %v", n, e.incus.Names())
	}
	for _, m := range f.Status.Members {
		if m.Instance != m.Name {
			t.Errorf("member %s: status records instance %q, want its legacy one", m.Name, m.Instance)
		}
		if _, ok := e.incus.File(m.Name, redisEngine.ServerConf); !ok {
			t.Errorf("member %s: the legacy instance was not configured", m.Name)
		}
	}

	// A lost legacy member comes back under the new name; the others stay.
	if err := e.incus.DeleteInstance(context.Background(), "cache-2"); err != nil {
		t.Fatal(err)
	}
	e.converge(r, testKey, 40)
	f = e.formation(testKey)
	want := map[string]string{"cache-1": "cache-1", "cache-2": testInstance(2), "cache-3": "cache-3"}
	for _, m := range f.Status.Members {
		if m.Instance != want[m.Name] || e.instances(f)[m.Name].Name != want[m.Name] {
			t.Errorf("member %s: instance %q (status %q), want %q", m.Name, e.instances(f)[m.Name].Name, m.Instance, want[m.Name])
		}
	}
}

// TestInstanceClash: an instance that is not the formation's, at the name
// a member's would be created under, blocks the formation (nothing is
// created, the instance is left alone); the blocked formation is looked at
// again with a backing-off poll, and once the instance is gone it becomes
// Ready without anything else changing.
func TestInstanceClash(t *testing.T) {
	e := standardEnv(t)
	foreign := incus.InstanceSpec{Name: testInstance(2), Image: "rsf-redis7-bookworm-v1", Config: map[string]string{keyFormationUID: "someone-else", "user.note": "not-yours"}}
	if err := e.incus.AddInstance(foreign, "Running"); err != nil {
		t.Fatal(err)
	}
	r := e.newReconciler()
	var polls []time.Duration
	for range 4 {
		res, err := e.reconcile(r, testKey)
		if err != nil {
			t.Fatal(err)
		}
		polls = append(polls, res.RequeueAfter)
		e.clock.Advance(res.RequeueAfter)
	}
	if polls[0] != convergePoll || polls[3] <= polls[0] || polls[3] > blockedPoll {
		t.Fatalf("polls %v: want a backoff from %s to at most %s", polls, convergePoll, blockedPoll)
	}
	f := e.formation(testKey)
	c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionDegraded)
	if f.Status.Phase != redisv1alpha1.PhaseBlocked || c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonInstanceNotOwned ||
		!strings.Contains(c.Message, testInstance(2)) || !strings.Contains(c.Message, "member cache-2") {
		t.Fatalf("phase %s, Degraded %+v", f.Status.Phase, c)
	}
	if n := e.incus.Calls()[incusfake.CreateInstance]; n != 0 {
		t.Fatalf("%d instances created while blocked", n)
	}
	if inst, err := e.incus.GetInstance(context.Background(), foreign.Name); err != nil || inst.Config["user.note"] != "not-yours" || inst.Config[keyFormationUID] != "someone-else" {
		t.Fatalf("the foreign instance was changed: %+v %v", inst, err)
	}

	if err := e.incus.DeleteInstance(context.Background(), foreign.Name); err != nil {
		t.Fatal(err)
	}
	e.converge(r, testKey, 40)
	if got := e.instances(e.formation(testKey))["cache-2"].Name; got != testInstance(2) {
		t.Fatalf("member 2's instance %q", got)
	}
}

// TestMemberMAC: a MAC follows the pinned address on its network, so that
// a container that takes over an address (a rebuild, or another
// formation's member after a deletion) is reached at once by neighbours
// that cached the address's MAC; without an address it is the member's.
func TestMemberMAC(t *testing.T) {
	a := &redisv1alpha1.RedisSentinelFormation{}
	a.UID, a.Spec.Incus.Network = "uid-a", "rsfbr0"
	b := a.DeepCopy()
	b.UID = "uid-b"
	other := a.DeepCopy()
	other.Spec.Incus.Network = "rsfbr1"
	macRE := regexp.MustCompile(`^0a(:[0-9a-f]{2}){5}$`)
	for _, tc := range []struct {
		name      string
		x, y      string
		wantEqual bool
	}{
		{"same address, another formation and member", memberMAC(a, 1, "10.77.0.2"), memberMAC(b, 3, "10.77.0.2"), true},
		{"another address", memberMAC(a, 1, "10.77.0.2"), memberMAC(a, 1, "10.77.0.3"), false},
		{"same address on another network", memberMAC(a, 1, "10.77.0.2"), memberMAC(other, 1, "10.77.0.2"), false},
		{"no address: the member's", memberMAC(a, 1, ""), memberMAC(a, 1, ""), true},
		{"no address, other formations", memberMAC(a, 1, ""), memberMAC(b, 1, ""), false},
	} {
		if !macRE.MatchString(tc.x) || !macRE.MatchString(tc.y) {
			t.Errorf("%s: %s, %s are not locally administered unicast MACs", tc.name, tc.x, tc.y)
		}
		if (tc.x == tc.y) != tc.wantEqual {
			t.Errorf("%s: %s vs %s, want equal %v", tc.name, tc.x, tc.y, tc.wantEqual)
		}
	}
}
