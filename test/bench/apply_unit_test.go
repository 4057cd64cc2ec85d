package bench

import (
	"slices"
	"testing"
	"time"

	"github.com/lxc/incus/v6/shared/api"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// These run under `make test` (no API server, no Incus).

// formationWith is a 3-member formation whose status has the members
// (role, masterLinkUp), reachable sentinels, quorum and Ready.
func formationWith(members []redisv1alpha1.MemberStatus, reachable int32, quorum, ready bool) *redisv1alpha1.RedisSentinelFormation {
	f := newFormation("ns", "f")
	f.Spec.Members = 3
	f.Status.Members = members
	f.Status.Sentinels = redisv1alpha1.SentinelsStatus{Reachable: reachable, QuorumOK: quorum}
	if ready {
		f.Status.Phase = redisv1alpha1.PhaseReady
		meta.SetStatusCondition(&f.Status.Conditions, metav1.Condition{Type: redisv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready"})
	}
	return f
}

func member(name string, role redisv1alpha1.MemberRole, linked bool) redisv1alpha1.MemberStatus {
	return redisv1alpha1.MemberStatus{Name: name, Role: role, MasterLinkUp: linked, InstanceState: "Running"}
}

var (
	master   = member("f-1", redisv1alpha1.RoleMaster, false)
	linked2  = member("f-2", redisv1alpha1.RoleReplica, true)
	linked3  = member("f-3", redisv1alpha1.RoleReplica, true)
	waiting3 = member("f-3", redisv1alpha1.RoleReplica, false)
)

func TestStatusPhases(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *redisv1alpha1.RedisSentinelFormation
		want []phase
	}{
		{"no members yet", formationWith(nil, 0, false, false), nil},
		{"two of three members", formationWith([]redisv1alpha1.MemberStatus{master, linked2}, 2, true, false), nil},
		{"a member's role unknown", formationWith([]redisv1alpha1.MemberStatus{master, linked2, member("f-3", redisv1alpha1.RoleUnknown, false)}, 3, true, false), nil},
		{"configured, a replica not linked", formationWith([]redisv1alpha1.MemberStatus{master, linked2, waiting3}, 1, false, false), []phase{phaseConfigured}},
		{"two masters are not linked", formationWith([]redisv1alpha1.MemberStatus{master, linked2, member("f-3", redisv1alpha1.RoleMaster, false)}, 3, true, false), []phase{phaseConfigured, phaseSentinels}},
		{"linked, two sentinels", formationWith([]redisv1alpha1.MemberStatus{master, linked2, linked3}, 2, true, false), []phase{phaseConfigured, phaseLinked}},
		{"sentinels without quorum", formationWith([]redisv1alpha1.MemberStatus{master, linked2, linked3}, 3, false, false), []phase{phaseConfigured, phaseLinked}},
		{"all but Ready", formationWith([]redisv1alpha1.MemberStatus{master, linked2, linked3}, 3, true, false), []phase{phaseConfigured, phaseLinked, phaseSentinels}},
		{"Ready", formationWith([]redisv1alpha1.MemberStatus{master, linked2, linked3}, 3, true, true), []phase{phaseConfigured, phaseLinked, phaseSentinels, phaseReady}},
	} {
		if got := statusPhases(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: phases %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBringUpKeepsFirstSighting(t *testing.T) {
	t0 := time.Now()
	u := bringUp{start: t0}
	u.observeStatus(formationWith([]redisv1alpha1.MemberStatus{master, linked2, waiting3}, 3, true, false), t0.Add(time.Second))
	u.observeStatus(formationWith([]redisv1alpha1.MemberStatus{master, linked2, linked3}, 3, true, true), t0.Add(2*time.Second))
	want := map[phase]time.Duration{phaseConfigured: time.Second, phaseSentinels: time.Second, phaseLinked: 2 * time.Second, phaseReady: 2 * time.Second}
	for p, d := range want {
		if got := u.since(p); got != d {
			t.Errorf("%s at %v, want %v", p, got, d)
		}
	}
	if !u.at[phaseCreated].IsZero() {
		t.Error("status set an Incus phase")
	}
}

// A rebuild counts the member linked and the formation Ready only after
// status showed the loss: the versions before it are from before the
// deletion.
func TestRebuildWatch(t *testing.T) {
	healthy := formationWith([]redisv1alpha1.MemberStatus{master, linked2, linked3}, 3, true, true)
	gone := formationWith([]redisv1alpha1.MemberStatus{master, linked2, {Name: "f-3"}}, 2, true, false)
	back := formationWith([]redisv1alpha1.MemberStatus{master, linked2, linked3}, 3, true, false)
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	r := rebuildWatch{member: "f-3"}
	r.observeStatus(healthy, at(1)) // before the operator noticed
	if !r.lossSeen.IsZero() || !r.linked.IsZero() || !r.ready.IsZero() {
		t.Fatalf("a version from before the deletion counted: %+v", r)
	}
	r.observeStatus(gone, at(2))
	r.observeStatus(back, at(3))
	r.observeStatus(healthy, at(4))
	r.observeStatus(gone, at(5)) // later sightings do not move the first
	r.observeStatus(healthy, at(6))
	if r.lossSeen != at(2) || r.linked != at(3) || r.ready != at(4) {
		t.Fatalf("loss %v, linked %v, Ready %v; want +2s, +3s, +4s", r.lossSeen.Sub(t0), r.linked.Sub(t0), r.ready.Sub(t0))
	}

	// The operator noticed through Ready alone (the member still listed linked).
	r = rebuildWatch{member: "f-3"}
	r.observeStatus(formationWith([]redisv1alpha1.MemberStatus{master, linked2, linked3}, 3, true, false), at(1))
	r.observeStatus(healthy, at(2))
	if r.lossSeen != at(1) || r.linked != at(2) || r.ready != at(2) {
		t.Fatalf("loss through Ready: %+v", r)
	}
}

func TestReplicaInGoodStanding(t *testing.T) {
	replicas := []map[string]string{
		{"name": "10.0.0.2:6379", "ip": "10.0.0.2", "port": "6379", "flags": "slave"},
		{"name": "10.0.0.3:6379", "ip": "10.0.0.3", "port": "6379", "flags": "s_down,slave,disconnected"},
		{"name": "10.0.0.4:6379", "ip": "10.0.0.4", "port": "6379", "flags": "slave,o_down"},
	}
	for _, tc := range []struct {
		ip   string
		port int
		want bool
	}{
		{"10.0.0.2", 6379, true},
		{"10.0.0.2", 6380, false}, // another port
		{"10.0.0.3", 6379, false}, // s_down, disconnected
		{"10.0.0.4", 6379, false}, // o_down
		{"10.0.0.5", 6379, false}, // not listed
	} {
		if got := replicaInGoodStanding(replicas, tc.ip, tc.port); got != tc.want {
			t.Errorf("%s:%d: %v, want %v", tc.ip, tc.port, got, tc.want)
		}
	}
}

// The instance watch keeps only the containers it follows, starts over at a
// deletion, and says when every one of a set reached a point.
func TestInstanceWatchEvents(t *testing.T) {
	w := &instanceWatch{byName: map[string]*seen{}}
	w.follow("a", "b")
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ev := func(s int, action, name string) {
		w.event(incus.LifecycleEvent{Time: at(s), Action: action, Instance: name, Project: "default"})
	}
	ev(1, api.EventLifecycleInstanceCreated, "a")
	ev(1, api.EventLifecycleInstanceCreated, "other") // not followed
	ev(2, api.EventLifecycleInstanceCreated, "b")
	ev(3, incus.ActionInstanceStarted, "a")
	w.event(incus.LifecycleEvent{Time: at(3), Action: incus.ActionInstanceStarted, Instance: "b", Project: "elsewhere"})
	created := func(s seen) time.Time { return s.created }
	started := func(s seen) time.Time { return s.started }
	if got := w.all([]string{"a", "b"}, created); got != at(2) {
		t.Errorf("all created at %v, want +2s", got.Sub(t0))
	}
	if got := w.all([]string{"a", "b"}, started); !got.IsZero() {
		t.Errorf("all started at %v though b did not start (in this project)", got.Sub(t0))
	}
	if _, ok := w.byName["other"]; ok {
		t.Error("an unfollowed container is recorded")
	}
	ev(4, incus.ActionInstanceDeleted, "a")
	if s := w.get("a"); s != (seen{}) {
		t.Errorf("after the deletion: %+v", s)
	}
	ev(5, api.EventLifecycleInstanceCreated, "a")
	if got := w.get("a").created; got != at(5) {
		t.Errorf("recreated at %v, want +5s", got.Sub(t0))
	}
}
