package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
)

var ipPattern = regexp.MustCompile(`10\.99\.\d+\.\d+`)

// normalizer replaces the addresses incusfake handed out (which depend on
// the order of parallel creates) with the names of the members holding
// them, so that two worlds can be compared.
func (e *env) normalizer() func(string) string {
	names := map[string]string{}
	// A member being rebuilt has no instance: its address is in status.
	f := &redisv1alpha1.RedisSentinelFormation{}
	if err := e.client.Get(context.Background(), testKey, f); err == nil {
		for _, m := range f.Status.Members {
			if m.Address != "" {
				names[m.Address] = "<" + m.Name + ">"
			}
		}
	}
	for _, name := range e.incus.Names() {
		inst, err := e.incus.GetInstance(context.Background(), name)
		if err != nil {
			continue
		}
		if inst.IPv4 != "" {
			names[inst.IPv4] = "<" + name + ">"
		}
		if pinned := inst.Devices["eth0"]["ipv4.address"]; pinned != "" {
			names[pinned] = "<" + name + ">"
		}
	}
	return func(s string) string {
		return ipPattern.ReplaceAllStringFunc(s, func(ip string) string {
			if n, ok := names[ip]; ok {
				return n
			}
			return ip
		})
	}
}

// snapshot is everything observable of a world after a pass, normalised:
// the formation's status (conditions without their transition times), the
// owned Secrets, the instances, the files the operator wrote, what every
// redis-server says of its role and which of passwords its backend user
// accepts, and the
// Events recorded.
func (e *env) snapshot(passwords ...string) string {
	e.t.Helper()
	norm := e.normalizer()
	var b strings.Builder
	f := e.formation(testKey)
	st := f.Status.DeepCopy()
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	js, _ := json.Marshal(st)
	fmt.Fprintf(&b, "status %s\nfinalizers %v generation %d\n", js, f.Finalizers, f.Generation)
	for _, name := range []string{testName + "-connection", testName + "-password-state", testName + "-internal-credentials"} {
		if s := e.secret(name); s != nil {
			data := map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
			js, _ := json.Marshal(data)
			fmt.Fprintf(&b, "secret %s %s owners %d\n", name, js, len(s.OwnerReferences))
		}
	}
	for _, name := range e.incus.Names() {
		inst, _ := e.incus.GetInstance(context.Background(), name)
		js, _ := json.Marshal(struct {
			Status  string
			Config  map[string]string
			Devices map[string]map[string]string
		}{inst.Status, inst.Config, inst.Devices})
		fmt.Fprintf(&b, "instance %s %s\n", name, js)
		for _, path := range e.incus.Files(name) {
			file, _ := e.incus.File(name, path)
			fmt.Fprintf(&b, "file %s:%s %o\n%s\n", name, path, file.Mode, file.Content)
		}
		if inst.IPv4 == "" {
			continue
		}
		repl, err := e.admin().Replication(context.Background(), redisEndpoint(inst.IPv4))
		fmt.Fprintf(&b, "redis %s: %s %s %v %v; the backend user accepts %q\n", name, repl.Role, repl.Master, repl.LinkUp, err,
			e.world.UserPasswords(redisEndpoint(inst.IPv4), acl.DefaultBackendUser, passwords...))
	}
	events := e.recorder.events()
	fmt.Fprintf(&b, "%d events\n%s\n", len(events), strings.Join(events, "\n"))
	return norm(b.String())
}

// decision is what a reconciler would decide now, normalised.
func (e *env) decision(r *FormationReconciler) string {
	e.t.Helper()
	f := e.formation(testKey)
	o := r.observe(e.ctx(), f, logr.Discard())
	o.release()
	p := decide(f, o, r.Options, r.now())
	var lines []string
	for _, a := range p.actions {
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s", a.kind, a.member, a.topology.Kind, a.target, a.reason))
	}
	for _, pr := range p.problems {
		lines = append(lines, "problem "+pr.reason+": "+pr.message)
	}
	lines = append(lines, fmt.Sprintf("requeue %s now %v progressing %q stop %v", p.requeue, p.requeueNow, p.progressing, o.stop))
	return e.normalizer()(strings.Join(lines, "\n"))
}

// TestRestartEquivalence runs the same story in two identical worlds: one
// operator throughout, and one replaced by a fresh operator before every
// pass. Before each pass the operator about to run and a fresh one decide
// the same; after each pass both worlds are the same (status, Secrets,
// instances, files, servers, Events). The story: bring-up, a password
// rotation through its grace period, a Sentinel failover the watcher
// reports, and a rollout with its planned failover.
func TestRestartEquivalence(t *testing.T) {
	one, many := standardEnv(t), standardEnv(t)
	r := one.newReconciler()
	worlds := []struct {
		e    *env
		next func() *FormationReconciler
	}{{one, func() *FormationReconciler { return r }}, {many, many.newReconciler}}

	pass := 0
	step := func(what string, passes int) {
		t.Helper()
		for range passes {
			pass++
			var results []string
			for _, w := range worlds {
				rec := w.next()
				// The operator that ran before and a fresh one decide alike.
				if before, fresh := w.e.decision(rec), w.e.decision(w.e.newReconciler()); before != fresh {
					t.Fatalf("%s, pass %d: decisions differ\nrunning operator:\n%s\nfresh operator:\n%s", what, pass, before, fresh)
				}
				res, err := w.e.reconcile(rec, testKey)
				results = append(results, w.e.normalizer()(fmt.Sprintf("%+v %v", res, err)))
				w.e.advanceFor(res, err)
			}
			if results[0] != results[1] {
				t.Fatalf("%s, pass %d: results differ: %s vs %s", what, pass, results[0], results[1])
			}
			a, b := one.snapshot(testPassword, rotatedPassword), many.snapshot(testPassword, rotatedPassword)
			if a != b {
				t.Fatalf("%s, pass %d: the worlds differ\n%s", what, pass, diffLines(a, b))
			}
			if !one.clock.Now().Equal(many.clock.Now()) {
				t.Fatalf("%s, pass %d: clocks differ", what, pass)
			}
		}
	}

	step("bring-up", 12)
	for _, w := range worlds {
		if f := w.e.formation(testKey); !isReady(f) {
			t.Fatalf("not Ready after the bring-up:\n%s", describe(f))
		}
	}

	for _, w := range worlds {
		w.e.setPassword(redisSecretName, rotatedPassword)
	}
	step("rotation", 6)
	for _, w := range worlds {
		w.e.clock.Advance(w.e.opts.PasswordGrace)
	}
	step("retirement", 6)
	for _, w := range worlds {
		f := w.e.formation(testKey)
		if f.Status.PasswordRotation != nil || !isReady(f) {
			t.Fatalf("rotation not finished:\n%s", describe(f))
		}
	}

	for _, w := range worlds {
		f := w.e.formation(testKey)
		master, _ := w.e.masterOfWorld(f)
		if err := w.e.admin().SentinelFailover(context.Background(), sentinelEndpoint(master.Host), f.Spec.MasterName); err != nil {
			t.Fatal(err)
		}
		to, epoch := w.e.masterOfWorld(f)
		w.e.watcher.setSwitches(testKey, switchOf(master, to, epoch, w.e.clock.Now()))
	}
	step("failover", 6)
	for _, w := range worlds {
		if f := w.e.formation(testKey); f.Status.Failovers != 1 || !isReady(f) {
			t.Fatalf("after the failover: failovers %d\n%s", f.Status.Failovers, describe(f))
		}
	}

	for _, w := range worlds {
		w.e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Incus.Limits.CPU = "2" })
	}
	step("rollout", 40)
	for _, w := range worlds {
		f := w.e.formation(testKey)
		if f.Status.Failovers != 2 || !isReady(f) {
			t.Fatalf("after the rollout: failovers %d\n%s", f.Status.Failovers, describe(f))
		}
		for name, inst := range w.e.instances(f) {
			if inst.Config["limits.cpu"] != "2" {
				t.Fatalf("%s not rebuilt", name)
			}
		}
		if p := w.e.world.Problems(); len(p) > 0 {
			t.Fatalf("members met configuration problems: %v", p)
		}
	}
}

func diffLines(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
		}
	}
	return strings.Join(slices.Clip(out), "\n")
}

func switchOf(from, to endpoint.Endpoint, epoch int64, at time.Time) sentinel.Switch {
	return sentinel.Switch{Time: at, From: hostPort(from), To: hostPort(to), Epoch: epoch, SdownAt: at.Add(-2 * time.Second)}
}
