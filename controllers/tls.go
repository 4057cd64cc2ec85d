package controllers

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/certs"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/fingerprint"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/render"
)

// Reasons of the TLSReady condition besides certs.Reason's, which name why
// a user Secret's certificate is refused.
const (
	ReasonTLSServed         = "CertificatesServed"
	ReasonTLSRolling        = "CertificatesRolling"
	ReasonTLSSecretNotFound = "TLSSecretNotFound"
	ReasonTLSSecretKey      = "TLSSecretKeyMissing"
	ReasonTLSSecretNotOwned = "TLSSecretNotOwned"
)

// Defaults of the certificates the operator issues (the schema's defaults,
// for a spec read before they were applied).
const (
	defaultCertificateDuration = 90 * 24 * time.Hour
	defaultRenewBefore         = 30 * 24 * time.Hour
	// caValidity is the formation CA's lifetime: it is not rotated by the
	// operator (see docs/tls.md).
	caValidity = 10 * 365 * 24 * time.Hour
)

// Keys of the operator's TLS Secret besides "<member>.crt"/"<member>.key".
const (
	tlsKeyCA    = "ca.crt"
	tlsKeyCAKey = "ca.key"
	// clientName's certificate is the operator's and the backends'.
	clientName       = "client"
	tlsKeyClient     = clientName + ".crt"
	tlsKeyClientKey  = clientName + ".key"
	userKeyCert      = "tls.crt"
	userKeyKey       = "tls.key"
	clientCommonName = "rsf-client"
)

func tlsEnabled(f *redisv1alpha1.RedisSentinelFormation) bool {
	return f.Spec.TLS != nil && f.Spec.TLS.Enabled
}

func clientAuthRequired(f *redisv1alpha1.RedisSentinelFormation) bool {
	return tlsEnabled(f) && f.Spec.TLS.ClientAuth == redisv1alpha1.ClientAuthRequired
}

// tlsSecretName is the formation's own TLS Secret: the CA and certificates
// the operator issues, or its copy of the user Secret the members run on.
func tlsSecretName(f *redisv1alpha1.RedisSentinelFormation) string { return f.Name + "-tls" }

// renderTLS is the render input of a TLS formation's servers running e
// (nil: off).
func renderTLS(f *redisv1alpha1.RedisSentinelFormation, e engine.Engine) *render.TLS {
	if !tlsEnabled(f) {
		return nil
	}
	return &render.TLS{CAFile: e.TLSCAFile, MemberFile: e.TLSMemberFile, AuthClients: clientAuthRequired(f)}
}

// tlsObs is the formation's TLS material as this pass read (and, for the
// operator's CA, issued) it.
type tlsObs struct {
	// secret is the formation's TLS Secret as read (nil: absent); issue,
	// when set, is what it must hold before the material is used, and
	// issueReason why.
	secret      *corev1.Secret
	issue       map[string][]byte
	issueReason string
	// forced is the renew-certificates annotation value an issue carries out.
	forced string
	// problem is why the material is refused (a user Secret): nothing is
	// applied, and no member created unless the members' own material
	// (the TLS Secret) can rebuild it. pending says what the check of a
	// user Secret waits for.
	problem *problem
	pending string
	// ca is the bundle's CA; caFile what the members trust: ca, or ca and
	// status.tls.trustedCA side by side while a change of CA rolls.
	ca, caFile []byte
	// member is each member's key and certificate chain, in one PEM.
	member map[string][]byte
	// dialCert and dialKey are what the operator presents to the members;
	// backendCert and backendKey what the connection Secret hands out
	// (only with the operator's CA and client certificates required).
	dialCert, dialKey       []byte
	backendCert, backendKey []byte
	// notAfter is the earliest expiry of the members' certificates, and
	// renewAt when the operator renews them (zero for a user Secret).
	notAfter, renewAt time.Time
}

// memberFiles are the TLS files a member gets, by path in its container,
// and their fingerprint (status.members[].tlsHash); nil when the material
// for it is not available.
func (t *tlsObs) memberFiles(m *memberObs) (map[string][]byte, string) {
	if t == nil || m == nil || t.member[m.name] == nil {
		return nil, ""
	}
	e := m.engine()
	files := map[string][]byte{e.TLSCAFile: t.caFile, e.TLSMemberFile: t.member[m.name]}
	return files, fingerprint.Strings(string(t.caFile), string(t.member[m.name]))[:16]
}

// expires notes that a certificate the members serve expires with leaf.
func (t *tlsObs) expires(leaf *x509.Certificate) {
	if t.notAfter.IsZero() || leaf.NotAfter.Before(t.notAfter) {
		t.notAfter = leaf.NotAfter
	}
}

// dial is the TLS material the operator dials the members with.
func (t *tlsObs) dial() redisadmin.TLSMaterial {
	if t == nil || t.caFile == nil {
		return redisadmin.TLSMaterial{}
	}
	return redisadmin.TLSMaterial{CA: string(t.caFile), Cert: string(t.dialCert), Key: string(t.dialKey)}
}

// tlsAddresses are the members' addresses by member, for the certificates.
func tlsAddresses(f *redisv1alpha1.RedisSentinelFormation, o *observation) map[string]string {
	addrs := map[string]string{}
	for _, list := range [][]*memberObs{o.members, o.leaving} {
		for _, m := range list {
			if a := memberAddress(f, m); a != "" {
				addrs[m.name] = a
			}
		}
	}
	return addrs
}

// observeTLS reads the formation's TLS material: the user Secret, checked
// against every member's address, or the operator's own, with the
// certificates that are missing, no longer match a member, are due or were
// asked to be renewed issued anew (written by the pass before use).
func (r *FormationReconciler) observeTLS(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) error {
	if !tlsEnabled(f) {
		return nil
	}
	o.tls = &tlsObs{member: map[string][]byte{}}
	secret, err := r.readOwnedSecret(ctx, f, tlsSecretName(f), ReasonTLSSecretNotOwned, "TLS")
	if se, ok := asSecretError(err); ok {
		o.tls.problem = &problem{se.reason, se.message}
		return nil
	} else if err != nil {
		return err
	}
	o.tls.secret = secret
	var applied map[string][]byte // the TLS Secret's content (nil: absent)
	if secret != nil {
		applied = secret.Data
	}
	if f.Spec.TLS.SecretName != "" {
		err = r.observeUserTLS(ctx, f, o, applied, now)
	} else {
		err = r.observeOperatorTLS(f, o, applied, now)
	}
	if err != nil || o.tls.ca == nil {
		return err
	}
	o.tls.caFile = o.tls.ca
	if st := f.Status.TLS; st != nil && st.TrustedCA != "" && st.TrustedCA != string(o.tls.ca) {
		o.tls.caFile = append(append(bytes.Clone(o.tls.ca), '\n'), st.TrustedCA...)
	}
	return nil
}

// observeUserTLS reads the Secret spec.tls.secretName names and checks it
// against every member's address. The members run on the formation's own
// copy of it (the TLS Secret), written before a new version is applied: a
// refused version leaves the operator dialing, and members rebuilt, with
// the material the members have.
func (r *FormationReconciler) observeUserTLS(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, old map[string][]byte, now time.Time) error {
	addrs := tlsAddresses(f, o)
	want, err := r.readUserTLS(ctx, f, o, addrs, now)
	if err != nil {
		return err
	}
	material := want
	switch {
	case want == nil && old == nil: // refused or waiting, and nothing applied yet
		return nil
	case want == nil: // refused or waiting: the members' own copy
		material = old
	default:
		keepPrevious(f, want, old, userKeyCert, userKeyKey)
		if !maps.EqualFunc(want, old, bytes.Equal) {
			o.tls.issue, o.tls.issueReason = want, "a new version of Secret "+f.Spec.TLS.SecretName
		}
	}
	combined := certs.CombinedPEM(material[userKeyCert], material[userKeyKey])
	for m := range addrs {
		o.tls.member[m] = combined
	}
	o.tls.ca = material[tlsKeyCA]
	o.tls.dialCert, o.tls.dialKey = dialPair(material, userKeyCert, userKeyKey)
	if leaf, err := certs.Leaf(material[userKeyCert]); err == nil {
		o.tls.expires(leaf)
	}
	return nil
}

// readUserTLS reads and checks the user's Secret: its ca.crt, tls.crt and
// tls.key, or nil and o.tls.problem saying why they are refused.
func (r *FormationReconciler) readUserTLS(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, addrs map[string]string, now time.Time) (map[string][]byte, error) {
	name := f.Spec.TLS.SecretName
	secret, err := r.readUserSecret(ctx, f, "spec.tls.secretName", name, ReasonTLSSecretNotFound)
	if se, ok := asSecretError(err); ok {
		o.tls.problem = &problem{se.reason, se.message}
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	for _, k := range []string{userKeyCert, userKeyKey, tlsKeyCA} {
		if len(secret.Data[k]) == 0 {
			o.tls.problem = &problem{ReasonTLSSecretKey, fmt.Sprintf("Secret %s/%s (spec.tls.secretName) has no key %q: it needs tls.crt, tls.key and ca.crt", f.Namespace, name, k)}
			return nil, nil
		}
	}
	// A certificate is only checked against every member's address: one
	// checked against fewer would be applied and then refused.
	for _, m := range o.members {
		if addrs[m.name] == "" {
			o.tls.pending = "waiting for the address of member " + m.name + " to check the certificate of Secret " + name + " against"
			return nil, nil
		}
	}
	bundle := certs.Bundle{CA: secret.Data[tlsKeyCA], Cert: secret.Data[userKeyCert], Key: secret.Data[userKeyKey]}
	_, err = certs.Check(bundle, slices.Sorted(maps.Values(addrs)), clientAuthRequired(f), now)
	if p, ok := err.(*certs.Problem); ok {
		o.tls.problem = &problem{string(p.Reason), fmt.Sprintf("Secret %s/%s (spec.tls.secretName): %s", f.Namespace, name, p.Message)}
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return map[string][]byte{tlsKeyCA: bundle.CA, userKeyCert: bundle.Cert, userKeyKey: bundle.Key}, nil
}

// observeOperatorTLS issues, into a copy of the TLS Secret's content old,
// the certificates that are missing, no longer match a member, are due or
// were asked to be renewed.
func (r *FormationReconciler) observeOperatorTLS(f *redisv1alpha1.RedisSentinelFormation, o *observation, old map[string][]byte, now time.Time) error {
	data := maps.Clone(old)
	if data == nil {
		data = map[string][]byte{}
	}
	spec := f.Spec.TLS
	validity, renewBefore := defaultCertificateDuration, defaultRenewBefore
	if spec.CertificateDuration != nil {
		validity = spec.CertificateDuration.Duration
	}
	if spec.RenewBefore != nil {
		renewBefore = spec.RenewBefore.Duration
	}
	forced := f.Annotations[redisv1alpha1.AnnotationRenewCertificates]
	if st := f.Status.TLS; forced != "" && st != nil && st.RenewRequest == forced {
		forced = ""
	}
	var reasons []string
	ca, err := certs.ParseAuthority(data[tlsKeyCA], data[tlsKeyCAKey])
	if err != nil {
		certPEM, keyPEM, err := certs.NewAuthority(fmt.Sprintf("rsf %s/%s CA", f.Namespace, f.Name), now, caValidity)
		if err != nil {
			return err
		}
		if ca, err = certs.ParseAuthority(certPEM, keyPEM); err != nil {
			return err
		}
		data = map[string][]byte{tlsKeyCA: certPEM, tlsKeyCAKey: keyPEM}
		reasons = append(reasons, "a new CA")
	}
	// due says why the certificate under key must be issued anew, if it must.
	due := func(key string, addresses []string) string {
		bundle := certs.Bundle{CA: data[tlsKeyCA], Cert: data[key+".crt"], Key: data[key+".key"]}
		var leaf *x509.Certificate
		var err error
		if addresses == nil {
			leaf, err = certs.CheckClient(bundle, now)
		} else {
			leaf, err = certs.Check(bundle, addresses, true, now)
		}
		switch {
		case err != nil:
			return "certificate " + key + " is missing or does not match"
		case forced != "":
			return "renewal asked for with the " + redisv1alpha1.AnnotationRenewCertificates + " annotation"
		case !now.Before(leaf.NotAfter.Add(-renewBefore)):
			return "certificate " + key + " is due for renewal"
		}
		o.tls.expires(leaf)
		return ""
	}
	issue := func(key string, certPEM, keyPEM []byte, err error) error {
		if err != nil {
			return fmt.Errorf("issuing certificate %s: %w", key, err)
		}
		data[key+".crt"], data[key+".key"] = certPEM, keyPEM
		if leaf, err := certs.Leaf(certPEM); err == nil {
			o.tls.expires(leaf)
		}
		return nil
	}
	addrs := tlsAddresses(f, o)
	for _, m := range slices.Sorted(maps.Keys(addrs)) {
		if why := due(m, []string{addrs[m]}); why != "" {
			certPEM, keyPEM, err := ca.IssueServing(m, []net.IP{net.ParseIP(addrs[m])}, now, validity)
			if err := issue(m, certPEM, keyPEM, err); err != nil {
				return err
			}
			reasons = append(reasons, why)
		}
	}
	if why := due(clientName, nil); why != "" {
		certPEM, keyPEM, err := ca.IssueClient(clientCommonName, now, validity)
		if err := issue(clientName, certPEM, keyPEM, err); err != nil {
			return err
		}
		reasons = append(reasons, why)
	}
	// Certificates of members no longer in the formation go.
	for k := range data {
		base := strings.TrimSuffix(strings.TrimSuffix(k, ".crt"), ".key")
		if _, ok := addrs[base]; !ok && base != clientName && base != previousClient && k != tlsKeyCA && k != tlsKeyCAKey {
			delete(data, k)
			reasons = append(reasons, "member "+base+" left")
		}
	}
	keepPrevious(f, data, old, tlsKeyClient, tlsKeyClientKey)
	if !maps.EqualFunc(data, old, bytes.Equal) {
		o.tls.issue, o.tls.issueReason, o.tls.forced = data, strings.Join(slices.Compact(slices.Sorted(slices.Values(reasons))), "; "), f.Annotations[redisv1alpha1.AnnotationRenewCertificates]
	}
	for m := range addrs {
		o.tls.member[m] = certs.CombinedPEM(data[m+".crt"], data[m+".key"])
	}
	o.tls.ca = data[tlsKeyCA]
	o.tls.dialCert, o.tls.dialKey = dialPair(data, tlsKeyClient, tlsKeyClientKey)
	if clientAuthRequired(f) {
		o.tls.backendCert, o.tls.backendKey = data[tlsKeyClient], data[tlsKeyClientKey]
	}
	o.tls.renewAt = o.tls.notAfter.Add(-renewBefore)
	return nil
}

// previousClient names, in the TLS Secret, the client certificate and key
// of the CA the members trust, kept while the CA changes: the operator
// dials with them until every member trusts the new CA too (with client
// certificates required, the new one would be refused until then).
const previousClient = "previous-client"

// keepPrevious carries the previous client certificate into data, the TLS
// Secret's next content, while the members trust another CA than data's
// (status.tls.trustedCA): the one old already kept, else old's own client
// certificate when old is of the trusted CA. Outside a change of CA it is
// dropped.
func keepPrevious(f *redisv1alpha1.RedisSentinelFormation, data, old map[string][]byte, certKey, keyKey string) {
	delete(data, previousClient+".crt")
	delete(data, previousClient+".key")
	trusted := ""
	if f.Status.TLS != nil {
		trusted = f.Status.TLS.TrustedCA
	}
	switch {
	case trusted == "" || trusted == string(data[tlsKeyCA]):
	case old[previousClient+".crt"] != nil:
		data[previousClient+".crt"], data[previousClient+".key"] = old[previousClient+".crt"], old[previousClient+".key"]
	case string(old[tlsKeyCA]) == trusted && old[certKey] != nil:
		data[previousClient+".crt"], data[previousClient+".key"] = old[certKey], old[keyKey]
	}
}

// dialPair is the client certificate the operator presents: the previous
// one while a change of CA is under way, else data's own.
func dialPair(data map[string][]byte, certKey, keyKey string) (certPEM, keyPEM []byte) {
	if data[previousClient+".crt"] != nil {
		return data[previousClient+".crt"], data[previousClient+".key"]
	}
	return data[certKey], data[keyKey]
}

// decideTLSMaterial writes the operator's TLS Secret when certificates were
// issued, before anything uses them, and reports refused material. It
// returns true when the pass must end there.
func decideTLSMaterial(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation) bool {
	if o.tls == nil {
		if f.Status.TLS != nil {
			p.record = append(p.record, func(s *redisv1alpha1.RedisSentinelFormationStatus) { s.TLS = nil })
		}
		return false
	}
	if o.tls.problem != nil {
		p.degrade(o.tls.problem.reason, "%s; nothing is applied to the members until it is fixed: they keep serving their current certificates", o.tls.problem.message)
		return false
	}
	if o.tls.issue == nil {
		return false
	}
	forced := o.tls.forced
	p.add(action{kind: actIssueCertificates, observed: o.tls.secret, data: o.tls.issue, reason: o.tls.issueReason,
		record: func(s *redisv1alpha1.RedisSentinelFormationStatus) {
			if forced != "" {
				tlsStatus(s).RenewRequest = forced
			}
		}})
	p.progressing = "issuing TLS certificates: " + o.tls.issueReason
	p.requeueNow = true
	return true
}

func tlsStatus(s *redisv1alpha1.RedisSentinelFormationStatus) *redisv1alpha1.TLSStatus {
	if s.TLS == nil {
		s.TLS = &redisv1alpha1.TLSStatus{}
	}
	return s.TLS
}

// decideTLSRollout gives running members the current TLS material live:
// every redis-server in one pass (CONFIG SET reloads it for new
// connections), then the sentinels one at a time, each only while every
// other sentinel answers (Sentinel 7.0 reads its TLS files only at a
// start). Once every member serves it, a CA trusted beside the new one is
// dropped (another round).
func decideTLSRollout(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, failingOver bool) {
	if o.tls == nil || o.tls.problem != nil {
		return
	}
	servers, sentinels, everySentinelUp := 0, 0, true
	var restart *memberObs
	for _, m := range o.members {
		everySentinelUp = everySentinelUp && m.sentinelUp()
		files, hash := o.tls.memberFiles(m)
		st := findMember(f.Status.Members, m.name)
		switch {
		case files == nil || st == nil || st.TLSHash == "":
			// Not configured yet: it gets the material then.
		case st.TLSHash != hash && !m.redisUp():
			servers++ // given the material once it answers
		case st.TLSHash != hash:
			servers++
			name := m.name
			p.add(action{kind: actApplyTLS, member: name, files: files, reason: "new TLS material",
				record: func(s *redisv1alpha1.RedisSentinelFormationStatus) {
					if ms := findMember(s.Members, name); ms != nil {
						ms.TLSHash = hash
					}
				}})
		case st.SentinelTLSHash != hash:
			sentinels++
			if restart == nil {
				restart = m
			}
		}
	}
	// A sentinel restarts only once every redis-server serves the new
	// material and while every other sentinel answers: the quorum holds.
	if restart != nil && servers == 0 && everySentinelUp && !failingOver {
		_, hash := o.tls.memberFiles(restart)
		name := restart.name
		p.add(action{kind: actRestartSentinel, member: name, reason: "its sentinel takes new TLS material only at a start",
			record: func(s *redisv1alpha1.RedisSentinelFormationStatus) {
				if ms := findMember(s.Members, name); ms != nil {
					ms.SentinelTLSHash = hash
				}
			}})
	}
	if servers+sentinels > 0 {
		if p.progressing == "" {
			p.progressing = fmt.Sprintf("giving members new TLS material (%d redis-servers and %d sentinels to go)", servers, sentinels)
		}
		p.wakeIn(settlePoll)
		return
	}
	// Every member serves the material: the CA it trusts is now only the
	// bundle's (a CA trusted beside it is dropped by another round).
	if st := f.Status.TLS; st == nil || st.TrustedCA != string(o.tls.ca) {
		ca := string(o.tls.ca)
		p.record = append(p.record, func(s *redisv1alpha1.RedisSentinelFormationStatus) { tlsStatus(s).TrustedCA = ca })
	}
}

// recordTLSStatus keeps the certificates' expiry and renewal time.
func recordTLSStatus(p *plan, o *observation) {
	if o.tls == nil || o.tls.problem != nil || o.tls.notAfter.IsZero() {
		return
	}
	notAfter, renewAt := metav1.NewTime(o.tls.notAfter), o.tls.renewAt
	p.record = append(p.record, func(s *redisv1alpha1.RedisSentinelFormationStatus) {
		st := tlsStatus(s)
		st.NotAfter, st.RenewAt = &notAfter, nil
		if !renewAt.IsZero() {
			st.RenewAt = &metav1.Time{Time: renewAt}
		}
	})
}

// setTLSCondition sets TLSReady from the material read and what the
// members serve (after this pass's records); a refusal is also an Event.
func setTLSCondition(f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) []note {
	st := &f.Status
	if !tlsEnabled(f) {
		meta.RemoveStatusCondition(&st.Conditions, redisv1alpha1.ConditionTLSReady)
		return nil
	}
	if o.tls == nil {
		return nil // the pass stopped before reading it
	}
	c := metav1.Condition{Type: redisv1alpha1.ConditionTLSReady, Status: metav1.ConditionFalse, ObservedGeneration: f.Generation, LastTransitionTime: metav1.NewTime(now)}
	var waiting []string
	for _, m := range o.members {
		_, hash := o.tls.memberFiles(m)
		if ms := findMember(st.Members, m.name); hash == "" || ms == nil || ms.TLSHash != hash || ms.SentinelTLSHash != hash {
			waiting = append(waiting, m.name)
		}
	}
	switch {
	case o.tls.problem != nil:
		c.Reason, c.Message = o.tls.problem.reason, o.tls.problem.message+"; the members keep serving their current certificates"
	case o.tls.issue != nil:
		c.Reason, c.Message = ReasonTLSRolling, "issuing certificates: "+o.tls.issueReason
	case o.tls.pending != "":
		c.Reason, c.Message = ReasonTLSRolling, o.tls.pending
	case len(waiting) > 0:
		c.Reason, c.Message = ReasonTLSRolling, "members not serving the current TLS material yet: "+strings.Join(waiting, ", ")
	default:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonTLSServed
		c.Message = "every member serves certificates valid until " + o.tls.notAfter.UTC().Format(time.RFC3339)
		if !o.tls.renewAt.IsZero() {
			c.Message += "; the operator renews them from " + o.tls.renewAt.UTC().Format(time.RFC3339)
		}
	}
	if !meta.SetStatusCondition(&st.Conditions, c) || o.tls.problem == nil {
		return nil
	}
	return []note{{eventType: corev1.EventTypeWarning, reason: c.Reason, action: "ValidateTLS", message: c.Message}}
}
