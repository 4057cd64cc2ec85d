package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/fingerprint"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// Placement on an Incus cluster: each member on its own cluster member, so
// that losing a host costs one member. The operator chooses the cluster
// member of every member it creates (Incus's own placement knows nothing of
// formations), reads back where each instance is, and acts on what the
// cluster says of its members: offline (the member is lost; re-created
// elsewhere after spec.incus.placement.replaceAfter), evacuating (the
// master's role is handed over first), back online (spread is restored).

// Reasons of the Spread condition and of host problems.
const (
	ReasonSpread           = "Spread"
	ReasonMembersShareHost = "MembersShareHost"
	ReasonCannotSpread     = "CannotSpread"
	ReasonHostLost         = "HostLost"
)

// Incus cluster member statuses the operator acts on besides
// incus.MemberOnline.
const (
	memberOffline    = "Offline"
	memberEvacuating = "Evacuating"
	memberEvacuated  = "Evacuated"
)

// evacuationOrigin is the instance key Incus sets on an instance it moved
// away in an evacuation; `incus cluster restore` moves it back there.
const evacuationOrigin = "volatile.evacuate.origin"

// clusterObs is the Incus cluster the formation's host belongs to.
type clusterObs struct {
	members []incus.ClusterMember
}

// observeCluster reads the cluster's members; nil on a standalone server.
func observeCluster(ctx context.Context, srv incus.Server) (*clusterObs, error) {
	members, err := srv.ClusterMembers(ctx)
	if err != nil || len(members) == 0 {
		return nil, err
	}
	return &clusterObs{members: members}, nil
}

// status is a cluster member's status ("" for an unknown one, and on a
// standalone server, which has no cluster).
func (c *clusterObs) status(name string) string {
	if c == nil {
		return ""
	}
	for _, m := range c.members {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

// anyOffline reports whether the cluster reports a member offline (false
// on a standalone server).
func (c *clusterObs) anyOffline() bool {
	return c != nil && slices.ContainsFunc(c.members, func(m incus.ClusterMember) bool { return m.Status == memberOffline })
}

// eligible are the online cluster members the formation may place members
// on (those of spec.incus.placement.group when set), by name.
func (c *clusterObs) eligible(f *redisv1alpha1.RedisSentinelFormation) []string {
	var out []string
	for _, m := range c.members {
		if m.Status == incus.MemberOnline && (f.Spec.Incus.Placement.Group == "" || slices.Contains(m.Groups, f.Spec.Incus.Placement.Group)) {
			out = append(out, m.Name)
		}
	}
	return out
}

// location is the cluster member the member's instance is on ("" without
// an instance, or on a standalone server).
func (o *observation) location(m *memberObs) string {
	if o.cluster == nil || m.instance == nil {
		return ""
	}
	return m.instance.Location
}

// hostDown is the member's cluster member when the cluster reports it
// offline and none of the member's servers answers, else "". Incus's word
// alone is not enough: right after one member is lost, it reports the
// healthy ones offline too for a while (13-16 s on the cluster lab).
func (o *observation) hostDown(m *memberObs) string {
	if loc := o.location(m); loc != "" && o.cluster.status(loc) == memberOffline && !m.redisUp() && !m.sentinelUp() {
		return loc
	}
	return ""
}

// hostEvacuating is the member's cluster member while it is being (or has
// been) evacuated with the member's instance still on it, else "".
func (o *observation) hostEvacuating(m *memberObs) string {
	loc := o.location(m)
	if s := o.cluster.status(loc); s == memberEvacuating || s == memberEvacuated {
		return loc
	}
	return ""
}

// occupancy counts the formation's members per cluster member.
func occupancy(o *observation) map[string][]string {
	at := map[string][]string{}
	for _, m := range o.members {
		if loc := o.location(m); loc != "" {
			at[loc] = append(at[loc], m.name)
		}
	}
	return at
}

// preferenceOrder is the eligible cluster members in the order a
// formation tries them: rotated by the formation's UID, so that the
// members (and the masters) of many formations do not all start on the
// first cluster member.
func preferenceOrder(f *redisv1alpha1.RedisSentinelFormation, eligible []string) []string {
	if len(eligible) == 0 {
		return nil
	}
	h, _ := strconv.ParseUint(fingerprint.Strings(string(f.UID), "placement")[:4], 16, 16) // hex by construction
	shift := int(h % uint64(len(eligible)))
	return append(slices.Clone(eligible[shift:]), eligible[:shift]...)
}

// placeMembers chooses the cluster member of each member about to be
// created: explicit targets when the spec has them; on a cluster, an
// eligible member holding none of the formation's members. A member that
// replaces one on a lost host, or any member under spread Preferred, goes
// beside the fewest others when no such member is free. Under spread
// Required the other creates happen all together or not at all: refused
// says why (nothing is created then).
func placeMembers(f *redisv1alpha1.RedisSentinelFormation, o *observation, creating []*memberObs) (targets map[string]string, refused string) {
	targets = map[string]string{}
	if len(f.Spec.Incus.Targets) > 0 || o.cluster == nil {
		for _, m := range creating {
			targets[m.name] = placementTarget(f, m.index)
		}
		return targets, ""
	}
	order := preferenceOrder(f, o.cluster.eligible(f))
	if len(order) == 0 {
		return nil, fmt.Sprintf("no cluster member is online%s to create %s on", inGroup(f), joinMemberNames(creating))
	}
	at := occupancy(o)
	var unplaced []string
	for _, m := range creating {
		best := ""
		for _, c := range order {
			if best == "" || len(at[c]) < len(at[best]) {
				best = c
			}
		}
		if len(at[best]) > 0 && f.Spec.Incus.Placement.Spread != redisv1alpha1.SpreadPreferred && !replacesLost(f, m) {
			unplaced = append(unplaced, m.name)
			continue
		}
		targets[m.name] = best
		at[best] = append(at[best], m.name)
	}
	if len(unplaced) > 0 {
		return nil, fmt.Sprintf("member(s) %s cannot be placed on a cluster member of their own: %d of the cluster's %d members are online%s (%s) and each holds a member already; spec.incus.placement.spread is Required, so nothing is created until a cluster member is free (or set spread to Preferred)",
			strings.Join(unplaced, ", "), len(order), len(o.cluster.members), inGroup(f), strings.Join(o.cluster.eligible(f), ", "))
	}
	return targets, ""
}

func inGroup(f *redisv1alpha1.RedisSentinelFormation) string {
	if g := f.Spec.Incus.Placement.Group; g != "" {
		return " in cluster group " + g
	}
	return ""
}

func joinMemberNames(ms []*memberObs) string {
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		names = append(names, m.name)
	}
	return strings.Join(names, ", ")
}

// replacesLost reports whether the member's next container replaces one
// left on a lost host.
func replacesLost(f *redisv1alpha1.RedisSentinelFormation, m *memberObs) bool {
	st := findMember(f.Status.Members, m.name)
	return st != nil && st.AbandonedInstance != ""
}

// decideLostHosts follows the members whose cluster member is offline:
// since when (status.members[].hostLostSince), reported as degraded, and,
// once spec.incus.placement.replaceAfter has passed while another member
// is the answering master, re-created elsewhere: the member's status names
// a new instance (created by the next pass, placed by placeMembers, and
// configured as a replica of that master), and the old one is remembered
// as abandoned. Abandoned instances are deleted once their host is back;
// they never start there (boot.autostart is off on a cluster).
func decideLostHosts(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) {
	if o.cluster == nil {
		return
	}
	after := f.Spec.Incus.Placement.ReplaceAfter
	for _, m := range o.members {
		name, st := m.name, findMember(f.Status.Members, m.name)
		lost := o.hostDown(m)
		if lost == "" {
			if st != nil && st.HostLostSince != nil {
				p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
					if ms := findMember(st.Members, name); ms != nil {
						ms.HostLostSince = nil
					}
				})
			}
			continue
		}
		since := now
		if st != nil && st.HostLostSince != nil {
			since = st.HostLostSince.Time
		} else {
			p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
				if ms := findMember(st.Members, name); ms != nil {
					ms.HostLostSince = timePtr(now)
				}
			})
		}
		master := masterMember(o, p.topology)
		offline := fmt.Sprintf("member %s's cluster member %s is offline (since %s)", name, lost, since.UTC().Format(time.RFC3339))
		switch {
		case after == nil:
			p.degrade(ReasonHostLost, "%s; it waits for its host (set spec.incus.placement.replaceAfter to re-create it elsewhere)", offline)
		case now.Before(since.Add(after.Duration)):
			p.degrade(ReasonHostLost, "%s; it is re-created on another cluster member at %s unless its host is back",
				offline, since.Add(after.Duration).UTC().Format(time.RFC3339))
			p.wakeIn(since.Add(after.Duration).Sub(now))
		case master == nil || master == m:
			p.degrade(ReasonHostLost, "%s; it is re-created once another member is the answering master (never as an empty master)", offline)
			p.wakeIn(convergePoll)
		default:
			p.degrade(ReasonHostLost, "%s; re-creating it on another cluster member as a replica of %s", offline, master.name)
			old, next := m.instanceName, replacementName(f, m)
			p.add(action{kind: actAbandonInstance, member: name, instance: old,
				reason: fmt.Sprintf("its cluster member %s has been offline since %s (spec.incus.placement.replaceAfter %s): re-created as %s, a replica of %s; %s is deleted once its host is back",
					lost, since.UTC().Format(time.RFC3339), after.Duration, next, master.name, old),
				record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
					if ms := findMember(st.Members, name); ms != nil {
						ms.AbandonedInstance, ms.Instance, ms.HostLostSince, ms.Location = old, next, nil, ""
					}
				}})
			p.requeueNow = true
		}
	}
}

// replacementName is the instance that replaces member m's on a lost
// host: Incus instance names are cluster-wide and the old instance stays
// until its host is back, so the new one is named after it.
func replacementName(f *redisv1alpha1.RedisSentinelFormation, m *memberObs) string {
	return instanceName(f.Namespace, f.Name, m.index, fingerprint.Strings(m.instanceName)[:4])
}

// decideAbandoned deletes the instances members left on lost hosts once
// their host is back (Incus cannot delete them before). They are the
// formation's own (listed by its UID) and stopped: nothing else is touched.
func decideAbandoned(p *plan, o *observation) {
	for _, a := range o.abandoned {
		if o.cluster.status(a.instance.Location) == memberOffline {
			continue
		}
		member, name := a.member, a.instance.Name
		p.add(action{kind: actDeleteAbandoned, member: member, instance: name,
			reason: fmt.Sprintf("its cluster member %s is back; the member was re-created elsewhere while it was lost", a.instance.Location),
			record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
				if ms := findMember(st.Members, member); ms != nil && ms.AbandonedInstance == name {
					ms.AbandonedInstance = ""
				}
			}})
	}
}

// misplaced are the members to move so that the formation is spread again:
// members sharing a cluster member (or outside the placement group) while
// an eligible one holds none, e.g. after a lost host came back. One of each
// crowded pair moves: a replica rather than the master, the newest rather
// than the oldest. Never with explicit targets, and never an instance that
// Incus evacuated (`incus cluster restore` moves it back itself).
func misplaced(f *redisv1alpha1.RedisSentinelFormation, o *observation, tp topology.Plan) []*memberObs {
	if o.cluster == nil || len(f.Spec.Incus.Targets) > 0 {
		return nil
	}
	eligible := o.cluster.eligible(f)
	at := occupancy(o)
	free := 0
	for _, c := range eligible {
		if len(at[c]) == 0 {
			free++
		}
	}
	var out []*memberObs
	for _, loc := range slices.Sorted(maps.Keys(at)) {
		names := at[loc]
		// Members on an offline or evacuated host are the lost-host and
		// evacuation paths' business.
		if len(out) >= free || o.cluster.status(loc) != incus.MemberOnline {
			continue
		}
		var here []*memberObs
		for _, m := range o.members {
			if slices.Contains(names, m.name) && m.instance.Config[evacuationOrigin] == "" {
				here = append(here, m)
			}
		}
		slices.SortFunc(here, func(a, b *memberObs) int {
			if (a.name == tp.MasterMember) != (b.name == tp.MasterMember) {
				if a.name == tp.MasterMember {
					return 1
				}
				return -1
			}
			return b.instance.CreatedAt.Compare(a.instance.CreatedAt)
		})
		keep := 1
		if !slices.Contains(eligible, loc) {
			keep = 0
		}
		for len(here) > keep && len(out) < free {
			out = append(out, here[0])
			here = here[1:]
		}
	}
	slices.SortFunc(out, func(a, b *memberObs) int { return a.index - b.index })
	return out
}

// setSpreadCondition says whether every member runs on its own cluster
// member; absent on a standalone server.
func setSpreadCondition(f *redisv1alpha1.RedisSentinelFormation, o *observation, p plan, now time.Time) {
	if o.stop != nil {
		return
	}
	if o.cluster == nil {
		meta.RemoveStatusCondition(&f.Status.Conditions, redisv1alpha1.ConditionSpread)
		return
	}
	c := metav1.Condition{Type: redisv1alpha1.ConditionSpread, Status: metav1.ConditionTrue, Reason: ReasonSpread, ObservedGeneration: f.Generation, LastTransitionTime: metav1.NewTime(now)}
	at := occupancy(o)
	var placed, shared []string
	for _, loc := range slices.Sorted(maps.Keys(at)) {
		placed = append(placed, strings.Join(at[loc], ", ")+" on "+loc)
		if len(at[loc]) > 1 {
			shared = append(shared, strings.Join(at[loc], " and ")+" share "+loc)
		}
	}
	switch {
	case p.unplaced != "":
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonCannotSpread, p.unplaced
	case len(shared) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, ReasonMembersShareHost
		c.Message = fmt.Sprintf("%s: %d of the cluster's %d members are online%s; spread is restored once a cluster member is free",
			strings.Join(shared, "; "), len(o.cluster.eligible(f)), len(o.cluster.members), inGroup(f))
	default:
		c.Message = "each member on its own cluster member: " + strings.Join(placed, "; ")
	}
	meta.SetStatusCondition(&f.Status.Conditions, c)
}
