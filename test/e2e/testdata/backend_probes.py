#!/usr/bin/python3
"""What a backend may do with a formation's connection Secret, through
redis-py (Debian's python3-redis 4.3.4) as a Python backend would use it:
redis.sentinel.Sentinel with the Secret's sentinel user and password in
sentinel_kwargs, the master found by Sentinel discovery with master_for.

Reads the connection Secret's keys from the environment (REDIS_URL,
REDIS_SENTINEL_ADDRS, REDIS_SENTINEL_MASTER_NAME, REDIS_SENTINEL_USERNAME,
REDIS_SENTINEL_PASSWORD, and with a rediss:// REDIS_URL the REDIS_TLS_*
ones) and PROBE_PREFIX (prefixes every key and channel
it touches). Runs every probe once and prints one JSON object on stdout:
{"<probe>": {"ok": bool, "error_class": str, "error": str, "detail": str}}.
A refused command has ok false and error_class NoPermissionError (redis-py
strips the NOPERM code from the message). Probes of administrative commands
use harmless arguments, so that a command wrongly allowed changes nothing.

Nothing here prints a password: errors from redis-py name users and
commands, never passwords.
"""

import json
import os
import sys
import tempfile
import time
import urllib.parse

import redis
from redis.sentinel import Sentinel

TIMEOUT = 3


def connect():
    url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
    user = urllib.parse.unquote(url.username or "") or None
    password = urllib.parse.unquote(url.password or "") or None
    db = int(url.path.lstrip("/") or 0)
    addrs = []
    for addr in os.environ["REDIS_SENTINEL_ADDRS"].split(","):
        host, port = addr.strip().rsplit(":", 1)
        addrs.append((host, int(port)))
    tls = tls_kwargs(url.scheme)
    sentinel_kwargs = {
        "username": os.environ.get("REDIS_SENTINEL_USERNAME") or None,
        "password": os.environ.get("REDIS_SENTINEL_PASSWORD") or None,
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
        **tls,
    }
    sentinel = Sentinel(addrs, sentinel_kwargs=sentinel_kwargs, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, **tls)
    name = os.environ["REDIS_SENTINEL_MASTER_NAME"]
    master = sentinel.master_for(name, username=user, password=password, db=db, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, **tls)
    return sentinel, name, master


def tls_kwargs(scheme):
    """redis-py's TLS arguments for a rediss:// REDIS_URL: the Secret's CA
    (and client certificate) written to files, as a backend mounting the
    Secret as a volume would have them. The members' certificates name
    their IP addresses, which redis-py 4.3 does not check against the
    address (ssl_check_hostname needs a name); the CA is checked."""
    if scheme != "rediss":
        return {}
    folder = tempfile.mkdtemp(prefix="rsf-tls-")
    files = {}
    for key in ("REDIS_TLS_CA_CERT", "REDIS_TLS_CLIENT_CERT", "REDIS_TLS_CLIENT_KEY"):
        if os.environ.get(key):
            path = os.path.join(folder, key)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(os.environ[key])
            files[key] = path
    kwargs = {"ssl": True, "ssl_cert_reqs": "required", "ssl_ca_certs": files.get("REDIS_TLS_CA_CERT")}
    if "REDIS_TLS_CLIENT_CERT" in files:
        kwargs["ssl_certfile"] = files["REDIS_TLS_CLIENT_CERT"]
        kwargs["ssl_keyfile"] = files["REDIS_TLS_CLIENT_KEY"]
    return kwargs


def main():
    prefix = os.environ.get("PROBE_PREFIX", "probe:py:")
    sentinel, name, master = connect()
    # A sentinel client as the Secret configures it (the discovery user).
    sentinel_client = sentinel.sentinels[0]
    nosuch = "e2elp-no-such-master"

    def discovery():
        host, port = sentinel.discover_master(name)
        replicas = sentinel.discover_slaves(name)
        others = sentinel_client.sentinel_sentinels(name)
        return "master %s:%s, %d replicas, %d other sentinels" % (host, port, len(replicas), len(others))

    def set_():
        if master.set(prefix + "set", "v-set") is not True:
            raise AssertionError("SET did not answer OK")
        return "OK"

    def get():
        master.set(prefix + "get", "v-get")
        got = master.get(prefix + "get")
        if got != b"v-get":
            raise AssertionError("GET returned %r" % (got,))
        return "v-get"

    def eval_():
        script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
        got = master.eval(script, 1, prefix + "eval", "v-eval")
        if got != b"v-eval":
            raise AssertionError("EVAL returned %r" % (got,))
        sha = master.script_load(script)
        got = master.evalsha(sha, 1, prefix + "eval", "v-evalsha")
        if got != b"v-evalsha":
            raise AssertionError("EVALSHA returned %r" % (got,))
        return "EVAL and EVALSHA"

    def pubsub():
        channel = prefix + "channel"
        p = master.pubsub()
        try:
            p.subscribe(channel)
            deadline = time.time() + 5
            msg = None
            while time.time() < deadline:
                msg = p.get_message(timeout=0.5)
                if msg and msg["type"] == "subscribe":
                    break
            if not msg or msg["type"] != "subscribe":
                raise AssertionError("no subscribe confirmation")
            receivers = master.publish(channel, "hello")
            if receivers < 1:
                raise AssertionError("PUBLISH reached %d subscribers" % receivers)
            while time.time() < deadline:
                msg = p.get_message(timeout=0.5)
                if msg and msg["type"] == "message":
                    if msg["data"] != b"hello":
                        raise AssertionError("received %r" % (msg["data"],))
                    return "received"
            raise AssertionError("the published message did not arrive")
        finally:
            p.close()

    def monitor():
        # Monitor sends MONITOR on a connection of its own and checks the
        # reply; it is closed either way.
        m = master.monitor()
        try:
            with m:
                return "MONITOR accepted"
        finally:
            m.connection.disconnect()

    probes = {
        "SENTINEL discovery": discovery,
        "SET": set_,
        "GET": get,
        "EVAL": eval_,
        "PUBLISH/SUBSCRIBE": pubsub,
        "CONFIG SET": lambda: master.execute_command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
        "FLUSHALL": lambda: master.execute_command("FLUSHALL", "E2ELP-NOT-A-MODE"),
        "SHUTDOWN": lambda: master.execute_command("SHUTDOWN", "ABORT"),
        "REPLICAOF": lambda: master.execute_command("REPLICAOF", "NO", "ONE"),
        "ACL SETUSER": lambda: master.execute_command("ACL", "SETUSER", "e2elp-probe"),
        "DEBUG": lambda: master.execute_command("DEBUG", "HELP"),
        "MONITOR": monitor,
        "SENTINEL SET": lambda: sentinel_client.execute_command("SENTINEL", "SET", nosuch, "down-after-milliseconds", "5000"),
        "SENTINEL REMOVE": lambda: sentinel_client.execute_command("SENTINEL", "REMOVE", nosuch),
        "SENTINEL MONITOR": lambda: sentinel_client.execute_command("SENTINEL", "MONITOR", nosuch, "127.0.0.1", "6379", "0"),
        "SENTINEL FAILOVER": lambda: sentinel_client.execute_command("SENTINEL", "FAILOVER", nosuch),
        "SENTINEL RESET": lambda: sentinel_client.execute_command("SENTINEL", "RESET", nosuch + "*"),
    }
    only = set(sys.argv[1:])
    results = {}
    for probe, run in probes.items():
        if only and probe not in only:
            continue
        try:
            detail = run()
            results[probe] = {"ok": True, "detail": str(detail)[:200]}
        except Exception as e:  # every outcome is reported, none stops the run
            results[probe] = {"ok": False, "error_class": type(e).__name__, "error": str(e)[:300]}
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
