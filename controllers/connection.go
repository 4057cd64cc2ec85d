package controllers

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/config"
)

// connectionSecretName is the Secret backends mount.
func connectionSecretName(f *redisv1alpha1.RedisSentinelFormation) string {
	return f.Name + "-connection"
}

// sentinelAddresses are ip:port of every member that has an address, in
// member order, at the port its sentinel listens on (during a roll of
// spec.redis.sentinelPort, the old one until the member is rebuilt). A
// member's address is pinned, so a stopped or rebuilt member keeps its
// place: the list, and the Secret backends restart on, stays the same
// through a failover.
func sentinelAddresses(f *redisv1alpha1.RedisSentinelFormation, o *observation) []string {
	var addrs []string
	for _, m := range o.members {
		if addr := memberAddress(f, m); addr != "" {
			addrs = append(addrs, net.JoinHostPort(addr, strconv.Itoa(memberPorts(f, m).sentinel)))
		}
	}
	return addrs
}

// connectionData is the seed's backend contract, with the backend user
// only: REDIS_URL carries its name, password and the DB (in Sentinel mode
// its host is not used, so it names the master set instead of an address
// that changes on failover); the sentinel variables its discovery-only
// password on the sentinels.
//
// With TLS on, REDIS_URL is rediss:// and the Secret carries the CA the
// members' certificates are checked against (both CAs while a change of
// CA rolls) and, with the operator's CA and client certificates required,
// the backends' client certificate.
func connectionData(f *redisv1alpha1.RedisSentinelFormation, creds acl.Set, addrs []string, t *tlsObs) map[string][]byte {
	user := backendUser(f).Name
	scheme := "redis"
	if t != nil {
		scheme = "rediss"
	}
	u := url.URL{
		Scheme: scheme,
		User:   url.UserPassword(user, creds[acl.BackendPassword].Current),
		Host:   f.Spec.MasterName + ":" + strconv.Itoa(int(f.Spec.Redis.Port)),
		Path:   "/0",
	}
	data := map[string][]byte{
		config.EnvSentinelAddrs:    []byte(strings.Join(addrs, ",")),
		config.EnvMasterName:       []byte(f.Spec.MasterName),
		config.EnvSentinelUsername: []byte(user),
		config.EnvSentinelPassword: []byte(creds[acl.BackendSentinelPassword].Current),
		config.EnvURL:              []byte(u.String()),
	}
	if t != nil {
		data[config.EnvTLSCACert] = t.caFile
		if t.backendCert != nil {
			data[config.EnvTLSClientCert], data[config.EnvTLSClientKey] = t.backendCert, t.backendKey
		}
	}
	return data
}

// decideConnection writes the connection Secret when its content changes
// (addresses, passwords, master name); an unchanged formation writes
// nothing. It carries the password the members accept (the state Secret's),
// so during a rotation backends get the new one only once every member
// takes it.
func decideConnection(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation) {
	addrs := sentinelAddresses(f, o)
	if len(addrs) == 0 || o.tls != nil && (o.tls.problem != nil || o.tls.issue != nil) {
		return
	}
	want := connectionData(f, o.creds, addrs, o.tls)
	info := &redisv1alpha1.ConnectionInfo{SentinelAddresses: addrs, MasterName: f.Spec.MasterName, SecretName: connectionSecretName(f)}
	setInfo := func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.Connection = info }
	switch {
	case o.connection == nil:
		p.add(action{kind: actWriteConnection, data: want, reason: "created", record: setInfo})
	case !metav1.IsControlledBy(o.connection, f):
		p.degrade(ReasonConnectionSecretNotOwned, "Secret %s exists and is not owned by this formation; it is left untouched", o.connection.Name)
	case !maps.EqualFunc(o.connection.Data, want, bytes.Equal):
		p.add(action{kind: actWriteConnection, data: want, reason: "sentinel addresses, master name or passwords changed", record: setInfo})
	default:
		p.record = append(p.record, setInfo)
	}
}

// writeOwnedSecret creates the formation's Secret name with data, owned by
// the formation, or updates the version of it this pass observed (a
// conflict reruns the pass from a fresh read).
func (r *FormationReconciler) writeOwnedSecret(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, observed *corev1.Secret, name string, data map[string][]byte) error {
	if observed != nil {
		secret := observed.DeepCopy()
		secret.Data = data
		if err := r.Update(ctx, secret); err != nil {
			return fmt.Errorf("updating Secret %s: %w", name, err)
		}
		return nil
	}
	secret := &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: data}
	secret.Namespace, secret.Name, secret.Labels = f.Namespace, name, ownedLabels(f)
	if err := controllerutil.SetControllerReference(f, secret, r.Scheme()); err != nil {
		return err
	}
	if err := r.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating Secret %s: %w", name, err)
	}
	return nil
}
