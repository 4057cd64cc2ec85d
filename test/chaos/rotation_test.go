package chaos

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
)

// Drill 8: the operator is SIGKILLed at each step of a password rotation,
// at points read from what it does (its log and the API), not at random
// times, and restarted after each kill. Two rotations on one formation
// (named chaoslp-<random>), the operator running with a short
// --password-grace (rotationGrace):
//
//  1. the backend user's passwords on the redis-servers and on the
//     sentinels (both user Secrets changed while the operator is down, so
//     that one rotation carries both);
//  2. the operator's own users' passwords (admin, replication, monitoring,
//     peer): the internal credentials Secret is deleted, the operator
//     generates new ones.
//
// A rotation is: (a) ApplyCredentials: every user on every member accepts
// the old and the new password, then masterauth, Sentinel's auth-pass and
// sentinel-pass switch to the new ones; (b) the password state Secret
// records current + previous and status.passwordRotation says when the
// previous ones retire; (c) the connection Secret hands out the new ones;
// (d) after the grace, ApplyCredentials with the new ones only, and the
// state Secret without the previous ones. The kill points, each detected
// by a watcher armed before the operator (re)starts, which SIGKILLs it the
// moment the point is seen:
//
//	K0  (internal only) the new internal credentials Secret appears
//	K1a during the ApplyCredentials that adds: the first member's server
//	    takes the new password (AUTH polled on raw connections to every
//	    member, about every millisecond), the others not yet
//	K1b the operator logs "action done" for that ApplyCredentials
//	K2  the state Secret records the previous passwords and status has
//	    passwordRotation
//	K3  in the grace, halfway to retireAt (backend: once the connection
//	    Secret carries the new passwords)
//	K4a during the ApplyCredentials that retires: the first member's
//	    server refuses the old password, the others not yet
//	K4b the operator logs "action done" for that ApplyCredentials
//	K5  the state Secret no longer records previous passwords
//
// A point the rotation has passed already (a kill that landed later than
// its point, e.g. K1b when the state was written before the kill of K1a)
// is noted and skipped. At every kill, with the operator dead (so nothing
// moves), where the rotation stood is recorded (state Secret, status, how
// many servers take the new and the old passwords) and the members are
// asked which passwords they take: the old ones must stay taken until
// K4a, the new ones from K1b on, and from K4b on only the new ones. After
// the rotation: status has no passwordRotation, the state Secret no
// previous password, the formation is Ready, a fresh client from the
// connection Secret writes (SET + WAIT 1) with the new passwords, every
// old password is refused and every new one accepted by every member,
// every replica is linked, every sentinel sees the master, its replicas
// and its N-1 peers, also after every replica link, Sentinel connection
// and sentinel peer link was cut (so each authenticates again with what it
// was given), no failover happened, no acknowledged write was lost and
// never did two members take writes at once. The retirement time in status
// never moves across the restarts (a restart does not extend the grace).

const (
	// rotationGrace is the operator's --password-grace in this drill.
	rotationGrace = 15 * time.Second
	// rotationStepBound bounds each wait for the next step.
	rotationStepBound = 90 * time.Second
	// rotationDown is how long the operator stays dead at each kill.
	rotationDown = 500 * time.Millisecond
	// minRotationKills is how many kill points must land mid-rotation
	// (before the end state) in each rotation.
	minRotationKills = 3
)

// TestRotationKillPoints is drill 8 (see above). It starts and stops the
// shared operator process itself (with --password-grace rotationGrace),
// so it runs apart from TestChaos and TestOperatorKillPoints.
func TestRotationKillPoints(t *testing.T) {
	stack(t)
	began := time.Now()
	t.Cleanup(func() { reportResults(t, "TestRotationKillPoints", began) })
	r := newResult(t, "8. operator SIGKILLed at each step of password rotations",
		fmt.Sprintf("operator SIGKILLed at kill points read from its log, the members and the API (during and after the ApplyCredentials that adds, state written, in the grace, during and after the ApplyCredentials that retires, state without the previous passwords), down %s each time, --password-grace %s: rotation of the backend passwords (both user Secrets), then of the internal credentials (their Secret deleted)", rotationDown, rotationGrace))
	d := &killDrill{rng: rand.New(rand.NewPCG(1, 2)), r: r, began: began}

	op.passwordGrace = rotationGrace
	t.Cleanup(func() { op.passwordGrace = 0 })
	op.start(t)
	t.Cleanup(func() { op.stop(t) })
	t.Cleanup(d.sumWrites)

	d.f = newFormationNamed(t, "chaoslp-"+randomHex(2))
	f := d.f
	d.setPassword(f.password)
	t.Cleanup(func() {
		if err := k8s.Get(context.Background(), f.key, &redisv1alpha1.RedisSentinelFormation{}); err != nil {
			return // deleted at the end of the run
		}
		if !op.alive() {
			op.start(t)
		}
		deleteFormation(t, f)
	})
	created := time.Now()
	waitReady(t, f, bringUpBound)
	checkInvariants(t, f)
	r.toReady = time.Since(created)

	steps := []killStep{
		{"1_backend_passwords", d.rotateBackend},
		{"2_internal_credentials", d.rotateInternal},
	}
	d.runSteps(t, steps)

	if !op.alive() {
		op.start(t)
	}
	deleteFormation(t, f)
	op.stop(t)
	t.Run("passwords_never_leak", testNoPasswordLeaks)
}

// ---------------------------------------------------------------- the two rotations

// rotateBackend rotates the backend user's passwords on the redis-servers
// and the sentinels: both user Secrets change while the operator is down
// (killed before the change), so that it starts one rotation of both.
func (d *killDrill) rotateBackend(t *testing.T) {
	f := d.f
	newPW, newSPW := newPassword("pw"), newPassword("spw")
	leaks.addSecret(newPW)
	leaks.addSecret(newSPW)
	rot := &rotation{d: d, f: f, name: "backend passwords", tag: "lp-backend",
		creds: []acl.Credential{acl.BackendPassword, acl.BackendSentinelPassword},
		old:   map[acl.Credential]string{acl.BackendPassword: f.password, acl.BackendSentinelPassword: f.sentinelPassword},
		new:   map[acl.Credential]string{acl.BackendPassword: newPW, acl.BackendSentinelPassword: newSPW},
	}
	rot.change = func(t *testing.T) {
		op.kill(t)
		rot.note("operator killed before the change; both user Secrets changed while it was down")
		for secret, value := range map[string]string{"redis-pw": newPW, "sentinel-pw": newSPW} {
			eventually(t, time.Minute, "updating Secret "+secret, func() (bool, string) {
				s := &corev1.Secret{}
				if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: secret}, s); err != nil {
					return false, err.Error()
				}
				s.Data["password"] = []byte(value)
				err := k8s.Update(context.Background(), s)
				return err == nil, fmt.Sprint(err)
			})
		}
		rot.offset = op.logSize() // the next start's lines
	}
	if rot.run(t) {
		f.password, f.sentinelPassword = newPW, newSPW
	}
}

// rotateInternal rotates the operator's own users' passwords by deleting
// the internal credentials Secret; the operator generates new ones.
func (d *killDrill) rotateInternal(t *testing.T) {
	f := d.f
	name := f.name() + "-internal-credentials"
	rot := &rotation{d: d, f: f, name: "internal credentials", tag: "lp-internal",
		creds: slices.Clone(acl.Internal), old: map[acl.Credential]string{}, new: map[acl.Credential]string{}}
	var oldUID types.UID
	rot.prepare = func(t *testing.T) {
		state, err := readState(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range acl.Internal {
			rot.old[c] = state[string(c)]
			if rot.old[c] == "" {
				t.Fatalf("the password state Secret has no %q before the rotation", c)
			}
		}
		s := &corev1.Secret{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: name}, s); err != nil {
			t.Fatalf("reading the internal credentials Secret: %v", err)
		}
		oldUID = s.UID
	}
	rot.change = func(t *testing.T) {
		rot.offset = op.logSize()
		s := &corev1.Secret{}
		s.Namespace, s.Name = f.key.Namespace, name
		if err := k8s.Delete(context.Background(), s); err != nil {
			t.Fatalf("deleting the internal credentials Secret: %v", err)
		}
	}
	// K0: the operator wrote the new internal credentials.
	rot.k0 = func(t *testing.T) bool {
		var fresh *corev1.Secret
		fired, ok := rot.step(t, "K0", "new internal credentials Secret written", rot.pollDetector(func() (bool, string, string) {
			s := &corev1.Secret{}
			err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: name}, s)
			if err != nil {
				return false, "", err.Error()
			}
			if s.UID == oldUID {
				return false, "", "still the old Secret"
			}
			fresh = s
			return true, "", ""
		}), nil)
		if !fired {
			return ok
		}
		for _, c := range acl.Internal {
			rot.new[c] = string(fresh.Data[string(c)])
			if rot.new[c] == "" || rot.new[c] == rot.old[c] {
				t.Errorf("K0: the new internal credentials Secret has no new %q", c)
			}
		}
		return true
	}
	rot.run(t)
}

// ---------------------------------------------------------------- one rotation

// rotation is one rotation under kills.
type rotation struct {
	t     *testing.T
	d     *killDrill
	f     *formation
	o     *opRun
	name  string
	tag   string
	creds []acl.Credential
	// old and new are the rotated credentials' passwords (new ones of the
	// internal credentials are known once K0 read them).
	old, new map[acl.Credential]string
	prepare  func(*testing.T)
	change   func(*testing.T)
	k0       func(*testing.T) bool
	// offset is where the operator's log lines after its last kill begin.
	offset int64
	start  time.Time
	// retireAt is status.passwordRotation.retireAt as first seen.
	retireAt time.Time
	// connNew: the connection Secret carries the new backend passwords;
	// newWriter: a writer from it was started.
	connNew, newWriter bool
	retireMoved        []string
	midRotation        int
	masterBefore       string
	// landed are the kill points, one line each, for the result row.
	landed []string
}

func (rot *rotation) note(format string, args ...any) {
	rot.d.r.note(rot.name+": "+format, args...)
}

func (rot *rotation) backendRotation() bool {
	return slices.Contains(rot.creds, acl.BackendPassword)
}

// run carries out the rotation with its kill points and checks the end
// state; false when it did not complete.
func (rot *rotation) run(t *testing.T) bool {
	d, f := rot.d, rot.f
	rot.t = t
	cur := waitReady(t, f, readyBound)
	rot.masterBefore = cur.Status.Master.Member
	if rot.prepare != nil {
		rot.prepare(t)
	}
	rot.o = d.begin(t, "rotation of the "+rot.name)
	rot.o.startWriter(t, rot.tag+"-old")
	settle()

	rot.start = time.Now()
	rot.change(t)
	completed := rot.killPoints(t)
	if !op.alive() {
		op.start(t)
	}

	var converged bool
	if completed {
		ok, why := rot.poll(rotationGrace+rotationStepBound, rot.endState)
		converged = ok
		if !ok {
			t.Errorf("%s: the rotation did not complete within %s of its last kill point: %s\n%s\noperator log tail:\n%s",
				rot.name, rotationGrace+rotationStepBound, why, rot.o.explain(), op.tail(40))
		}
	}
	rot.o.converged = converged
	rot.o.took = time.Since(rot.start)
	for _, m := range rot.retireMoved {
		t.Errorf("%s: status.passwordRotation.retireAt moved: %s (a restart must not extend or shorten the grace)", rot.name, m)
	}
	rot.note("%d kill points, %d of them mid-rotation: %s", len(rot.o.kills), rot.midRotation, strings.Join(rot.landed, "; "))
	if rot.midRotation < minRotationKills {
		t.Errorf("%s: only %d kill points landed before the rotation completed, want at least %d:\n  %s", rot.name, rot.midRotation, minRotationKills, rot.o.describe())
	}
	if converged {
		rot.note("completed %.1f s after the change", rot.o.took.Seconds())
		relinkAndCheckFormation(t, f, d.r, rot.o.explain)
	}
	rot.o.finish(t, converged, 0)
	if converged {
		rot.o.tr.checkMasterMoves(t, rot.masterBefore)
	}
	return converged
}

// killPoints walks the kill points K0-K5; false when a step never came.
func (rot *rotation) killPoints(t *testing.T) bool {
	t.Helper()
	first := rot.creds[0]
	if rot.k0 != nil && !rot.k0(t) {
		return false
	}

	// K1a: during the ApplyCredentials that adds: the first member's
	// server takes the new password (the others may not yet).
	if rot.rotationRecorded() {
		rot.note("K1a not reached: the rotation was recorded already")
	} else if n, total := rot.takenBy(first, rot.new[first]); n > 0 {
		rot.note("K1a not reached: %d of %d servers took the new %s password already", n, total, first)
	} else if _, ok := rot.step(t, "K1a", "during the ApplyCredentials that adds", rot.authDetector(first, rot.new[first], "accepted", time.Time{}), func(t *testing.T) {
		// Adding never takes the old password away.
		for _, c := range rot.creds {
			for _, p := range rot.authProblems(c, rot.old[c], "accepted") {
				t.Errorf("%s K1a (the old passwords must stay taken while the new ones are added): %s", rot.name, p)
			}
		}
	}); !ok {
		return false
	}

	// K1b: after the ApplyCredentials that adds (the restarted operator
	// does it again when the state Secret was not written).
	if rot.rotationRecorded() {
		rot.note("K1b not reached: the rotation was recorded before the ApplyCredentials was logged")
	} else if _, ok := rot.step(t, "K1b", "after the ApplyCredentials that adds", rot.logDetector(), func(t *testing.T) { rot.expectBoth(t, "K1b") }); !ok {
		return false
	}

	// K2: the state Secret records the previous passwords, status the
	// retirement time.
	if _, ok := rot.step(t, "K2", "state Secret and status.passwordRotation written", rot.pollDetector(func() (bool, string, string) {
		if !rot.rotationRecorded() {
			return false, "", "the state Secret does not record the previous passwords yet"
		}
		cur, err := getFormation(rot.f)
		if err != nil {
			return false, "", err.Error()
		}
		if cur.Status.PasswordRotation == nil {
			return false, "", "the state Secret records the previous passwords, status has no passwordRotation yet"
		}
		return true, "", ""
	}), func(t *testing.T) {
		rot.expectBoth(t, "K2")
		rot.checkRotationStatus(t)
	}); !ok {
		return false
	}

	// K3: in the grace, halfway to the retirement (for the backend
	// rotation, once the connection Secret hands out the new passwords).
	if _, ok := rot.step(t, "K3", "in the grace", rot.pollDetector(func() (bool, string, string) {
		cur, err := getFormation(rot.f)
		if err != nil {
			return false, "", err.Error()
		}
		pr := cur.Status.PasswordRotation
		if pr == nil {
			return false, "the previous passwords were retired already", ""
		}
		rot.observeRetireAt(pr)
		if rot.backendRotation() && !rot.connNew {
			return false, "", "the connection Secret still hands out the old passwords"
		}
		left := time.Until(pr.RetireAt.Time)
		if left < time.Second {
			return false, fmt.Sprintf("%.1f s to retireAt only", left.Seconds()), ""
		}
		if left > rotationGrace/2 {
			return false, "", fmt.Sprintf("%.1f s to retireAt", left.Seconds())
		}
		return true, "", ""
	}), func(t *testing.T) { rot.expectBoth(t, "K3") }); !ok {
		return false
	}

	// K4a: during the ApplyCredentials that retires: the first member's
	// server refuses the old password (the others may take it still).
	if !rot.rotationRecorded() {
		rot.note("K4a not reached: the previous passwords were retired already")
	} else if _, ok := rot.step(t, "K4a", "during the ApplyCredentials that retires", rot.authDetector(first, rot.old[first], "refused", rot.retireAt), func(t *testing.T) {
		if early := rot.retireAt; !early.IsZero() && time.Now().Before(early.Add(-time.Second)) {
			t.Errorf("%s: the previous passwords were retired %.1f s before status.passwordRotation.retireAt", rot.name, time.Until(early).Seconds())
		}
		for _, c := range rot.creds {
			for _, p := range rot.authProblems(c, rot.new[c], "accepted") {
				t.Errorf("%s K4a (the new passwords must stay taken while the old ones are retired): %s", rot.name, p)
			}
		}
	}); !ok {
		return false
	}

	// K4b: after the ApplyCredentials that retires (done again by the
	// restarted operator when the state Secret still has the previous
	// passwords).
	if !rot.anyPrevious() {
		rot.note("K4b not reached: the state Secret had dropped the previous passwords already")
	} else if _, ok := rot.step(t, "K4b", "after the ApplyCredentials that retires", rot.logDetector(), func(t *testing.T) { rot.expectOnlyNew(t, "K4b") }); !ok {
		return false
	}

	// K5: the state Secret no longer records previous passwords.
	_, ok := rot.step(t, "K5", "state Secret without previous passwords", rot.pollDetector(func() (bool, string, string) {
		return !rot.anyPrevious(), "", "the state Secret still records previous passwords"
	}), func(t *testing.T) { rot.expectOnlyNew(t, "K5") })
	return ok
}

// checkRotationStatus checks status.passwordRotation against the rotation.
func (rot *rotation) checkRotationStatus(t *testing.T) {
	t.Helper()
	cur := get(t, rot.f)
	pr := cur.Status.PasswordRotation
	if pr == nil {
		return
	}
	got := slices.Clone(pr.Credentials)
	sort.Strings(got)
	var want []string
	for _, c := range rot.creds {
		want = append(want, string(c))
	}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: status.passwordRotation.credentials %v, want %v", rot.name, got, want)
	}
	if pr.StateSecretName != rot.f.name()+"-password-state" {
		t.Errorf("%s: status.passwordRotation.stateSecretName %q", rot.name, pr.StateSecretName)
	}
	rot.observeRetireAt(pr)
}

// observeRetireAt records retireAt and any change of it.
func (rot *rotation) observeRetireAt(pr *redisv1alpha1.PasswordRotationStatus) {
	at := pr.RetireAt.Time
	switch {
	case rot.retireAt.IsZero():
		rot.retireAt = at
		rot.note("status.passwordRotation.retireAt %+.1f s after the change (grace %s)", at.Sub(rot.start).Seconds(), rotationGrace)
	case !at.Equal(rot.retireAt) && len(rot.retireMoved) < 5:
		rot.retireMoved = append(rot.retireMoved, fmt.Sprintf("%s -> %s", rot.retireAt.Format(time.RFC3339), at.Format(time.RFC3339)))
		rot.retireAt = at
	}
}

// tick runs at every poll: the connection Secret's passwords, writers.
func (rot *rotation) tick() {
	if rot.connNew || !rot.backendRotation() {
		return
	}
	cfg, err := connectionConfig(rot.f)
	if err != nil || cfg.Password != rot.new[acl.BackendPassword] || cfg.SentinelPassword != rot.new[acl.BackendSentinelPassword] {
		return
	}
	if cfg.Username != rot.f.backendUser || cfg.SentinelUsername != rot.f.backendUser {
		return
	}
	rot.connNew = true
	rot.note("the connection Secret hands out the new passwords %.1f s after the change", time.Since(rot.start).Seconds())
	rot.d.setPassword(rot.new[acl.BackendPassword]) // the probes' new connections
}

// startNewWriter starts, in the test's goroutine, a writer from the
// connection Secret once it hands out the new passwords.
func (rot *rotation) startNewWriter() {
	if rot.connNew && !rot.newWriter {
		rot.newWriter = true
		rot.o.startWriter(rot.t, rot.tag+"-new")
	}
}

// poll checks cond every 20 ms (running tick) until it holds or timeout.
func (rot *rotation) poll(timeout time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	why := ""
	for {
		rot.tick()
		rot.startNewWriter()
		ok, w := cond()
		if ok {
			return true, ""
		}
		why = w
		if time.Now().After(deadline) {
			return false, why
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- kill points

// detector watches for a kill point in its own goroutine until stop says
// to give up: fire, or a reason the point was passed already (skip), or
// why it has not come (why).
type detector func(stop func() bool) (fire bool, skip, why string)

// step arms a detector, starts the operator if it is down (the detector
// runs first, so that a point reached while the operator starts is
// caught), and SIGKILLs the operator the moment the detector fires. With
// the operator dead (nothing moves any more) it records where the rotation
// stood and runs check. fired is false when the point was passed already
// (ok) or never came within rotationStepBound (not ok, an error).
func (rot *rotation) step(t *testing.T, id, what string, detect detector, check func(*testing.T)) (fired, ok bool) {
	t.Helper()
	deadline := time.Now().Add(rotationGrace + rotationStepBound)
	done := make(chan struct{})
	var skip, why string
	go func() {
		defer close(done)
		fired, skip, why = detect(func() bool { return time.Now().After(deadline) })
		if fired {
			op.sigkillNow()
		}
	}()
	if !op.alive() {
		op.start(t)
	}
	<-done
	rot.startNewWriter()
	switch {
	case skip != "":
		rot.note("%s (%s) not reached: %s", id, what, skip)
		return false, true
	case !fired:
		t.Errorf("%s %s (%s): not reached within %s: %s\n%s\noperator log tail:\n%s", rot.name, id, what, rotationGrace+rotationStepBound, why, rot.o.explain(), op.tail(40))
		return false, false
	}
	at := time.Since(rot.start)
	op.kill(t) // reaps it (SIGKILLed already, unless it was not running yet)
	rot.offset = op.logSize()
	where, short, mid := rot.where()
	rot.o.kills = append(rot.o.kills, killPoint{at: at, down: rotationDown, before: mid, state: id + " " + what + ": " + where})
	rot.landed = append(rot.landed, fmt.Sprintf("%s %s %+.1f s (%s)", id, what, at.Seconds(), short))
	if mid {
		rot.midRotation++
	}
	t.Logf("%s: %s %s at %+.1f s: %s", rot.name, id, what, at.Seconds(), where)
	if check != nil {
		check(t)
	}
	time.Sleep(rotationDown) // the next step starts the operator again
	return true, true
}

// pollDetector polls cond every 20 ms.
func (rot *rotation) pollDetector(cond func() (fire bool, skip, why string)) detector {
	return func(stop func() bool) (bool, string, string) {
		why := ""
		for !stop() {
			rot.tick()
			fire, skip, w := cond()
			if fire || skip != "" {
				return fire, skip, ""
			}
			why = w
			time.Sleep(20 * time.Millisecond)
		}
		return false, "", why
	}
}

// logDetector fires on the formation's next "action done" line for an
// ApplyCredentials in the operator's log (after rot.offset).
func (rot *rotation) logDetector() detector {
	name := `"` + rot.f.name() + `"`
	from := rot.offset
	return func(stop func() bool) (bool, string, string) {
		last := time.Now()
		_, _, ok := op.nextLogLine(from, `"action done"`, func(l logLine) bool {
			return l.Msg == "action done" && l.Action == "ApplyCredentials" && strings.Contains(l.raw, name)
		}, func() bool {
			if time.Since(last) > 250*time.Millisecond {
				rot.tick()
				last = time.Now()
			}
			return stop()
		})
		return ok, "", "no \"action done\" line for an ApplyCredentials of the formation in the operator's log"
	}
}

// authDetector fires when any member's server answers want ("accepted"
// or "refused") to AUTH of credential c's user with pw. It keeps one raw
// connection per server and sends AUTH on all of them in turn, back to
// back, so that it fires within about a millisecond of the first member
// being given its users (ApplyCredentials sets them member by member).
//
// With notBefore set, it waits until a second before it (the retirement
// time) before it starts, so as not to load the members meanwhile.
func (rot *rotation) authDetector(c acl.Credential, pw, want string, notBefore time.Time) detector {
	use := credentialUses(rot.f)[c]
	return func(stop func() bool) (bool, string, string) {
		for !notBefore.IsZero() && time.Until(notBefore) > time.Second && !stop() {
			rot.tick()
			time.Sleep(50 * time.Millisecond)
		}
		ms, err := rot.o.members()
		if err != nil {
			return false, "", err.Error()
		}
		var conns []*rawConn
		for _, name := range sortedKeys(ms) {
			if rc, err := dialRaw(ms[name].IPv4, use.ports[0]); err == nil {
				conns = append(conns, rc)
			}
		}
		defer func() {
			for _, rc := range conns {
				rc.close()
			}
		}()
		if len(conns) == 0 {
			return false, "", "no member's server answers"
		}
		cmd := respCommand("AUTH", use.user, pw)
		last := time.Now()
		for !stop() {
			for _, rc := range conns {
				rc.send(cmd)
			}
			for _, rc := range conns {
				reply, err := rc.reply()
				if err != nil {
					continue
				}
				if (want == "accepted" && reply == "+OK") || (want == "refused" && strings.HasPrefix(reply, "-WRONGPASS")) {
					return true, "", ""
				}
			}
			if time.Since(last) > 250*time.Millisecond {
				rot.tick()
				last = time.Now()
			}
		}
		return false, "", fmt.Sprintf("no server %s the %s password", want, c)
	}
}

// rawConn is a plain RESP connection, for the tight AUTH loop.
type rawConn struct {
	c  net.Conn
	r  *bufio.Reader
	ok bool
}

func dialRaw(address string, port int) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(address, fmt.Sprint(port)), time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReader(c), ok: true}, nil
}

func respCommand(args ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return []byte(b.String())
}

func (rc *rawConn) send(cmd []byte) {
	if !rc.ok {
		return
	}
	_ = rc.c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := rc.c.Write(cmd); err != nil {
		rc.ok = false
	}
}

func (rc *rawConn) reply() (string, error) {
	if !rc.ok {
		return "", fmt.Errorf("connection lost")
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := rc.r.ReadString('\n')
	if err != nil {
		rc.ok = false
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (rc *rawConn) close() { _ = rc.c.Close() }

// where describes the rotation's progress as the API and the members
// record it, at length and in short, and whether it is mid-rotation
// (previous passwords recorded or accepted, or status still rotating).
func (rot *rotation) where() (string, string, bool) {
	state, err := readState(rot.f)
	if err != nil {
		return "state Secret: " + err.Error(), "state Secret unreadable", true
	}
	var parts []string
	var prev []string
	for k := range state {
		if strings.HasSuffix(k, ".previous") {
			prev = append(prev, strings.TrimSuffix(k, ".previous"))
		}
	}
	sort.Strings(prev)
	parts = append(parts, fmt.Sprintf("state Secret records previous passwords of %v", prev))
	newIn := 0
	for _, c := range rot.creds {
		if n := rot.new[c]; n != "" && state[string(c)] == n {
			newIn++
		}
	}
	parts = append(parts, fmt.Sprintf("%d of %d rotated credentials current in it", newIn, len(rot.creds)))
	short := "state: no previous"
	if len(prev) > 0 {
		short = "state: previous recorded"
	}
	mid := len(prev) > 0
	if cur, err := getFormation(rot.f); err == nil {
		if pr := cur.Status.PasswordRotation; pr != nil {
			parts = append(parts, fmt.Sprintf("status.passwordRotation %v retireAt %+.1f s", pr.Credentials, pr.RetireAt.Sub(rot.start).Seconds()))
			short += ", status: rotation"
			mid = true
		} else {
			parts = append(parts, "no status.passwordRotation")
			short += ", status: none"
		}
	}
	first := rot.creds[0]
	if rot.new[first] != "" {
		n, total := rot.takenBy(first, rot.new[first])
		o, _ := rot.takenBy(first, rot.old[first])
		parts = append(parts, fmt.Sprintf("%s: new password taken by %d, old by %d of %d servers", first, n, o, total))
		short += fmt.Sprintf(", %s new/old taken by %d/%d of %d", first, n, o, total)
		mid = mid || n < total || o > 0
	}
	if rot.backendRotation() {
		parts = append(parts, fmt.Sprintf("connection Secret new: %v", rot.connNew))
		if rot.connNew {
			short += ", connection Secret new"
		}
	}
	return strings.Join(parts, ", "), short, mid
}

// takenBy counts the servers (of every member, on the credential's
// ports) that take credential c's user with pw.
func (rot *rotation) takenBy(c acl.Credential, pw string) (n, total int) {
	use := credentialUses(rot.f)[c]
	ms, err := rot.o.members()
	if err != nil {
		return 0, 0
	}
	for _, name := range sortedKeys(ms) {
		for _, port := range use.ports {
			total++
			if authState(ms[name].IPv4, port, use.user, pw) == "accepted" {
				n++
			}
		}
	}
	return n, total
}

// rotationRecorded: the state Secret has the rotated credentials' new
// passwords current and the old ones as previous.
func (rot *rotation) rotationRecorded() bool {
	state, err := readState(rot.f)
	if err != nil {
		return false
	}
	for _, c := range rot.creds {
		if state[string(c)+".previous"] != rot.old[c] || state[string(c)] == rot.old[c] || state[string(c)] == "" {
			return false
		}
	}
	return true
}

func (rot *rotation) anyPrevious() bool {
	state, err := readState(rot.f)
	if err != nil {
		return true
	}
	for k := range state {
		if strings.HasSuffix(k, ".previous") {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- who takes which password

// credentialUse is where a credential's user logs in.
type credentialUse struct {
	user  string
	ports []int
}

func credentialUses(f *formation) map[acl.Credential]credentialUse {
	return map[acl.Credential]credentialUse{
		acl.BackendPassword:         {f.backendUser, []int{redisPort}},
		acl.BackendSentinelPassword: {f.backendUser, []int{sentinelPort}},
		acl.Admin:                   {acl.AdminUser, []int{redisPort, sentinelPort}},
		acl.Replication:             {acl.ReplicationUser, []int{redisPort}},
		acl.Monitoring:              {acl.MonitoringUser, []int{redisPort}},
		acl.Peer:                    {acl.PeerUser, []int{sentinelPort}},
	}
}

// authProblems lists the members' servers that do not answer want
// ("accepted" or "refused") to the credential's user with pw.
func (rot *rotation) authProblems(c acl.Credential, pw, want string) []string {
	use := credentialUses(rot.f)[c]
	ms, err := rot.o.members()
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, name := range sortedKeys(ms) {
		for _, port := range use.ports {
			if got := authState(ms[name].IPv4, port, use.user, pw); got != want {
				problems = append(problems, fmt.Sprintf("%s:%d %s with its %s password: %s, want %s", name, port, use.user, c, got, want))
			}
		}
	}
	return problems
}

// expectBoth: every member takes the old and the new passwords (the new
// ones when known: before K1 the internal ones may not be).
func (rot *rotation) expectBoth(t *testing.T, point string) {
	t.Helper()
	rot.fillNew()
	var problems []string
	for _, c := range rot.creds {
		problems = append(problems, rot.authProblems(c, rot.old[c], "accepted")...)
		if rot.new[c] != "" {
			problems = append(problems, rot.authProblems(c, rot.new[c], "accepted")...)
		}
	}
	for _, p := range problems {
		t.Errorf("%s %s (old and new passwords must both be taken): %s", rot.name, point, p)
	}
}

// expectOnlyNew: every member takes the new passwords and refuses the old.
func (rot *rotation) expectOnlyNew(t *testing.T, point string) {
	t.Helper()
	rot.fillNew()
	var problems []string
	for _, c := range rot.creds {
		problems = append(problems, rot.authProblems(c, rot.old[c], "refused")...)
		problems = append(problems, rot.authProblems(c, rot.new[c], "accepted")...)
	}
	for _, p := range problems {
		t.Errorf("%s %s (after the retirement only the new passwords may be taken): %s", rot.name, point, p)
	}
}

// fillNew reads the new internal passwords from the state Secret once it
// has them (as current, beside the old ones as previous).
func (rot *rotation) fillNew() {
	state, err := readState(rot.f)
	if err != nil {
		return
	}
	for _, c := range rot.creds {
		if rot.new[c] == "" && state[string(c)] != rot.old[c] {
			rot.new[c] = state[string(c)]
		}
	}
}

// endState is the rotation's end: nothing left to retire, Ready, the new
// passwords everywhere and the old ones nowhere, everyone linked.
func (rot *rotation) endState() (bool, string) {
	f := rot.f
	cur, err := getFormation(f)
	if err != nil {
		return false, err.Error()
	}
	var problems []string
	if pr := cur.Status.PasswordRotation; pr != nil {
		problems = append(problems, fmt.Sprintf("status.passwordRotation still %v (retireAt %s)", pr.Credentials, pr.RetireAt.Format(time.RFC3339)))
	}
	state, err := readState(f)
	if err != nil {
		return false, err.Error()
	}
	for k := range state {
		if strings.HasSuffix(k, ".previous") {
			problems = append(problems, "the state Secret still has "+k)
		}
	}
	rot.fillNew()
	for _, c := range rot.creds {
		if rot.new[c] == "" || state[string(c)] != rot.new[c] {
			problems = append(problems, fmt.Sprintf("the state Secret's %s is not the new password", c))
		}
	}
	if len(problems) > 0 {
		return false, strings.Join(problems, "; ")
	}
	if rot.backendRotation() && !rot.connNew {
		return false, "the connection Secret does not hand out the new passwords"
	}
	for _, c := range rot.creds {
		problems = append(problems, rot.authProblems(c, rot.old[c], "refused")...)
		problems = append(problems, rot.authProblems(c, rot.new[c], "accepted")...)
	}
	problems = append(problems, credentialProblems(f, cur)...)
	if len(problems) == 0 {
		if err := connectionWrite(f); err != nil {
			problems = append(problems, "a fresh client from the connection Secret: "+err.Error())
		}
	}
	return len(problems) == 0, strings.Join(problems, "; ")
}

// connectionWrite writes through a fresh client built from the connection
// Secret (SET + WAIT 1): what a backend that reloaded its Secret does.
func connectionWrite(f *formation) error {
	conn := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: f.name() + "-connection"}, conn); err != nil {
		return err
	}
	c, err := redisclient.FromSecretData(conn.Data, redisclient.Options{MaxRetries: -1})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := "chaos:lp:fresh:" + randomHex(4)
	if err := c.Set(ctx, key, key, time.Hour).Err(); err != nil {
		leaks.sawError("fresh connection client", err)
		return fmt.Errorf("SET: %w", err)
	}
	if n, err := c.Wait(ctx, 1, 2*time.Second).Result(); err != nil || n < 1 {
		if err != nil {
			leaks.sawError("fresh connection client", err)
		}
		return fmt.Errorf("WAIT 1: %d replicas, %v", n, err)
	}
	return nil
}

// readState is the password state Secret's content.
func readState(f *formation) (map[string]string, error) {
	s := &corev1.Secret{}
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: f.name() + "-password-state"}, s)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no password state Secret")
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
		leaks.addSecret(string(v))
	}
	return out, nil
}
