package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// execIn runs a shell script in one of the suite's containers and fails
// the test on a non-zero exit.
func execIn(t *testing.T, instance, script string) string {
	t.Helper()
	res, err := execScript(instance, script)
	if err != nil {
		t.Fatalf("in %s: %s: %v", instance, script, err)
	}
	return res
}

func execScript(instance, script string) (string, error) {
	if !ownInstance(instance) {
		panic("the chaos suite only touches its own instances, not " + instance)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := incusSrv.Exec(ctx, instance, []string{"sh", "-c", script})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("exit %d: %s%s", res.ExitCode, res.Stderr, res.Stdout)
	}
	return res.Stdout, nil
}

// ownInstance: the suite's formations are named chaos-<random> (chaoslp-
// for the rotation drill), and their instances' names begin with theirs
// (controllers.InstanceName).
func ownInstance(instance string) bool {
	return strings.HasPrefix(instance, "chaos-") || strings.HasPrefix(instance, "chaoslp-")
}

// hardStop force-stops one of the suite's containers (a power cut).
func hardStop(t *testing.T, instance string) {
	t.Helper()
	if !ownInstance(instance) {
		t.Fatalf("refusing to stop %s", instance)
	}
	if err := incusSrv.StopInstance(context.Background(), instance, true); err != nil {
		t.Fatalf("hard-stopping %s: %v", instance, err)
	}
}

// waitFailover waits until a sentinel on one of the witnesses names
// another master than old (ip:port) and returns it.
func waitFailover(t *testing.T, f *formation, witnesses []redisv1alpha1.MemberStatus, old string) string {
	t.Helper()
	var now string
	eventually(t, failoverBound, "a sentinel of the majority names a new master", func() (bool, string) {
		var seen []string
		for _, w := range witnesses {
			addr, err := sentinelMaster(f, w.Address)
			if err == nil && addr != old {
				now = addr
				return true, ""
			}
			seen = append(seen, fmt.Sprintf("%s: %s %v", w.Name, addr, err))
		}
		return false, strings.Join(seen, "; ")
	})
	return now
}

// memberAt names the member at ip:port.
func memberAt(f *redisv1alpha1.RedisSentinelFormation, addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	for _, m := range f.Status.Members {
		if m.Address == host {
			return m.Name
		}
	}
	return addr
}

func masterAddr(f *redisv1alpha1.RedisSentinelFormation) string {
	return net.JoinHostPort(f.Status.Master.Address, strconv.Itoa(int(f.Status.Master.Port)))
}

// runIDs are every member's redis-server and sentinel run_id: unchanged
// run ids mean the processes were not restarted.
func runIDs(t *testing.T, f *formation, cur *redisv1alpha1.RedisSentinelFormation) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, m := range cur.Status.Members {
		srv, err := info(f, m.Address, "server")
		if err != nil {
			t.Fatalf("INFO server on %s: %v", m.Name, err)
		}
		ids[m.Name+"/redis"] = srv["run_id"]
		s := adminAt(f, m.Address, sentinelPort)
		sm, err := s.InfoMap(context.Background(), "server").Result()
		_ = s.Close()
		if err != nil {
			t.Fatalf("INFO server on sentinel %s: %v", m.Name, err)
		}
		ids[m.Name+"/sentinel"] = sm["Server"]["run_id"]
	}
	return ids
}

// ---------------------------------------------------------------- incusd

const incusdPath = "/usr/libexec/incus/incusd"

// incusdDaemon finds the machine's incusd daemon process (not one of its
// fork* helpers, nor the incusd of a nested host such as the cluster lab's
// nodes, which runs in an Incus container's cgroup, lxc.payload.<name>):
// its pid and command line.
func incusdDaemon() (int, []string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	var found []int
	var argv []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(data) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if args[0] != incusdPath || (len(args) > 1 && !strings.HasPrefix(args[1], "-")) {
			continue
		}
		if cgroup, err := os.ReadFile("/proc/" + e.Name() + "/cgroup"); err != nil || strings.Contains(string(cgroup), "/lxc.payload.") {
			continue
		}
		found, argv = append(found, pid), args
	}
	if len(found) != 1 {
		return 0, nil, fmt.Errorf("want one incusd daemon process, found %v", found)
	}
	return found[0], argv, nil
}

func systemdHost() bool {
	comm, _ := os.ReadFile("/proc/1/comm")
	return strings.TrimSpace(string(comm)) == "systemd"
}

// killIncusd SIGKILLs the incusd daemon (its containers keep running) and
// returns its command line for startIncusd.
func killIncusd(t *testing.T) []string {
	t.Helper()
	pid, argv, err := incusdDaemon()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing incusd (pid %d): %v", pid, err)
	}
	eventually(t, 30*time.Second, "incusd gone", func() (bool, string) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return strings.Contains(string(data), ") Z "), "still running" // a zombie is gone enough
		}
		return true, ""
	})
	t.Logf("incusd (pid %d, %v) SIGKILLed", pid, argv)
	return argv
}

// startIncusd starts incusd the way the lab-host role does (start-stop-
// daemon with its pidfile, or systemd), waits until it is ready and
// reconnects the suite's client. A no-op when incusd runs.
func startIncusd(t *testing.T, argv []string) {
	t.Helper()
	if _, _, err := incusdDaemon(); err != nil {
		var cmd *exec.Cmd
		if systemdHost() {
			cmd = exec.Command("systemctl", "start", "incus.socket", "incus.service")
		} else {
			if len(argv) == 0 {
				argv = []string{incusdPath, "--group", "root", "--logfile", "/var/log/incus/incusd.log"}
			}
			args := append([]string{"--start", "--background", "--make-pidfile", "--pidfile", "/run/incus.pid",
				"--exec", incusdPath, "--startas", "/bin/sh", "--", "-c", `ulimit -n 1048576 2>/dev/null || true; exec "$0" "$@"`}, argv...)
			cmd = exec.Command("start-stop-daemon", args...)
			cmd.Env = append(os.Environ(), "PATH=/usr/libexec/incus:/usr/sbin:/usr/bin:/sbin:/bin")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("starting incusd: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command("incus", "admin", "waitready", "--timeout=120").CombinedOutput(); err != nil {
		t.Fatalf("incusd not ready: %v\n%s", err, out)
	}
	srv, err := incus.Connect(context.Background(), incus.Options{})
	if err != nil {
		t.Fatalf("reconnecting to incusd: %v", err)
	}
	incusSrv = srv
}

// ---------------------------------------------------------------- sentinels

// maskSentinel kills a member's sentinel for good: masked (so neither
// systemd's Restart=always nor the operator can start it), then killed.
func maskSentinel(t *testing.T, instance string) {
	t.Helper()
	unit := suiteEngine.SentinelUnit
	execIn(t, instance, "systemctl mask --runtime "+unit+" && systemctl kill --signal=SIGKILL "+unit+"; systemctl stop "+unit+"; ! systemctl is-active --quiet "+unit)
}

// unmaskSentinel lets the operator start the sentinel again.
func unmaskSentinel(instance string) error {
	_, err := execScript(instance, "systemctl unmask --runtime "+suiteEngine.SentinelUnit)
	return err
}

// ---------------------------------------------------------------- partition

// partition cuts a member off from its peers inside its container:
// blackhole routes to the peers' addresses drop everything it sends them
// (so no TCP connection in either direction survives), while the host
// (operator, clients, probes) still reaches it.
func partition(t *testing.T, instance string, peers []string) {
	t.Helper()
	var cmds []string
	for _, p := range peers {
		cmds = append(cmds, "ip route add blackhole "+p+"/32")
	}
	execIn(t, instance, strings.Join(cmds, " && "))
}

func healPartition(instance string, peers []string) error {
	var errs []error
	for _, p := range peers {
		if _, err := execScript(instance, "ip route del blackhole "+p+"/32 2>/dev/null || ! ip route show | grep -q 'blackhole "+p+" '"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
