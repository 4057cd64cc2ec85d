package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/render"
)

// ReasonNoFreeAddress: the network has no address left for a new member.
const ReasonNoFreeAddress = "NoFreeAddress"

// A member's address is chosen before its container exists: recorded in
// status by one pass, pinned on the container (eth0 ipv4.address) and
// written into it as a static network configuration by the create of the
// next. The container then boots with its address instead of waiting for
// a DHCP lease, a crash between the two passes cannot hand the address out
// twice, and a rebuilt member gets the same one back.

// addressing is what choosing and writing addresses needs.
type addressing struct {
	incus.Addressing
	// taken are the addresses other formations on a network of the same
	// name recorded, created or not yet.
	taken []netip.Addr
	// release ends the reservation's critical section (see
	// observeAddressing); nil when the pass reserves nothing.
	release func()
}

// needsAddress reports whether a member is about to be created without an
// address of its own.
func needsAddress(f *redisv1alpha1.RedisSentinelFormation, m *memberObs) bool {
	return m.instance == nil && previousAddress(f, m.name) == ""
}

// observeAddressing reads the network's IPv4 plan while members are to be
// created, or a running one is not pinned yet, on a network whose addresses
// Incus manages (nil otherwise: on another network, e.g. a macvlan on an
// Incus cluster, members take a DHCP lease by their MAC, which stays the
// same across rebuilds, and nothing is pinned). When an
// address is to be chosen, it also takes the operator's reservation lock
// and reads every other formation's recorded addresses from the API server
// (not the cache): the lock is released once the pass wrote its status
// (addressing.release), so that the next reservation sees this one.
// Formations on other IncusHosts count too when they name a network of
// the same name: two IncusHosts may reach one server (a socket and its
// HTTPS address, or two allowlists for one host), and a member being
// rebuilt holds its address only in status. Between distinct servers
// whose networks share a name and subnet, that only leaves an address
// unused.
func (r *FormationReconciler) observeAddressing(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation) error {
	if f.Spec.Incus.Network == "" || !anyMissing(o.members) && !slices.ContainsFunc(o.members, unpinned) {
		return nil
	}
	a, err := o.incus.NetworkAddressing(ctx, f.Spec.Incus.Network)
	switch {
	case errors.Is(err, incus.ErrNotBridged):
		o.unpinnable = true
		return nil
	case errors.Is(err, incus.ErrNoAddressing):
		return nil
	case err != nil:
		return err
	}
	o.addressing = &addressing{Addressing: a}
	if !slices.ContainsFunc(o.members, func(m *memberObs) bool { return needsAddress(f, m) }) {
		return nil
	}
	r.reservations.Lock()
	o.addressing.release = r.reservations.Unlock
	var all redisv1alpha1.RedisSentinelFormationList
	if err := r.APIReader.List(ctx, &all); err != nil {
		return fmt.Errorf("listing formations for their addresses: %w", err)
	}
	for _, other := range all.Items {
		if other.UID == f.UID || other.Spec.Incus.Network != f.Spec.Incus.Network {
			continue
		}
		for _, m := range other.Status.Members {
			if addr, err := netip.ParseAddr(m.Address); err == nil {
				o.addressing.taken = append(o.addressing.taken, addr)
			}
		}
	}
	return nil
}

// unpinned reports whether a running member's address is not pinned on its
// eth0 yet.
func unpinned(m *memberObs) bool {
	return m.instance != nil && m.instance.Status == "Running" && m.instance.IPv4 != "" && m.instance.Devices["eth0"]["ipv4.address"] != m.instance.IPv4
}

// release ends the observation's address reservation, if it holds one.
// Every observe is followed by it (nil-safe).
func (o *observation) release() {
	if o != nil && o.addressing != nil && o.addressing.release != nil {
		o.addressing.release()
		o.addressing.release = nil
	}
}

// decideAddresses records a free address for every member about to be
// created without one, and reports whether it did: the creates then wait
// for the next pass, which finds the addresses in status.
func decideAddresses(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation) bool {
	var names []string
	for _, m := range o.members {
		if needsAddress(f, m) {
			names = append(names, m.name)
		}
	}
	if o.addressing == nil || len(names) == 0 {
		return false
	}
	taken := slices.Concat(o.addressing.InUse, o.addressing.taken)
	for _, m := range f.Status.Members {
		if addr, err := netip.ParseAddr(m.Address); err == nil {
			taken = append(taken, addr)
		}
	}
	picked := freeAddresses(o.addressing.Addressing, taken, len(names))
	if len(picked) < len(names) {
		p.degrade(ReasonNoFreeAddress, "network %s (%s) has no free address left for member(s) %s; nothing is created until addresses are freed or the network grows",
			f.Spec.Incus.Network, o.addressing.Gateway.Masked(), strings.Join(names, ", "))
		p.wakeIn(blockedPoll)
		return true
	}
	p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
		for i, name := range names {
			if ms := findMember(st.Members, name); ms != nil {
				ms.Address = picked[i].String()
			}
		}
	})
	p.progressing = "choosing addresses for " + strings.Join(names, ", ")
	p.requeueNow = true
	return true
}

// freeAddresses returns up to n addresses of the subnet that are not taken,
// the lowest first: outside the network's DHCP ranges, then (when those
// are exhausted) inside them, where Incus's static allocation keeps the
// DHCP server from handing them out too. The network and broadcast
// addresses are never chosen.
func freeAddresses(a incus.Addressing, taken []netip.Addr, n int) []netip.Addr {
	subnet := a.Gateway.Masked()
	inRanges := func(addr netip.Addr) bool {
		return slices.ContainsFunc(a.DHCPRanges, func(r incus.AddressRange) bool {
			return addr.Compare(r.First) >= 0 && addr.Compare(r.Last) <= 0
		})
	}
	var outside, inside []netip.Addr
	for addr := subnet.Addr().Next(); subnet.Contains(addr.Next()) && len(outside) < n; addr = addr.Next() {
		switch {
		case slices.Contains(taken, addr):
		case inRanges(addr):
			if len(inside) < n {
				inside = append(inside, addr)
			}
		default:
			outside = append(outside, addr)
		}
	}
	return slices.Concat(outside, inside)[:min(n, len(outside)+len(inside))]
}

// staticNetwork is the instance configuration with which the image boots
// a new member's container on its chosen address (none without an address
// in the observed network's subnet: the image's DHCP setup stays).
func staticNetwork(o *observation, address string) map[string]string {
	addr, err := netip.ParseAddr(address)
	if o.addressing == nil || err != nil {
		return nil
	}
	config, err := render.StaticNetwork(addr, o.addressing.Gateway)
	if err != nil {
		return nil
	}
	return config
}
