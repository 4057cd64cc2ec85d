package render

import (
	"fmt"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
)

// validateUsers checks the ACL users of a config file: names that Redis
// rewrites safely, each once; non-empty passwords (written as SHA-256
// only, so any other byte is fine); rules from aclRuleRE only, so that no
// input can switch a user on, give it a password or reset it; and a
// default user that stays disabled.
func validateUsers(field string, users []acl.User) error {
	seen := map[string]int{}
	for i, u := range users {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := userName(f+".Name", u.Name); err != nil {
			return err
		}
		if j, dup := seen[u.Name]; dup {
			return fieldErr(f+".Name", "%s is also %s[%d]", show(u.Name), field, j)
		}
		seen[u.Name] = i
		if u.Name == acl.DefaultUser && (len(u.Passwords) > 0 || len(u.Rules) > 0) {
			return fieldErr(f, "the default user must stay disabled: no passwords and no rules")
		}
		for j, p := range u.Passwords {
			if p == "" {
				return fieldErr(fmt.Sprintf("%s.Passwords[%d]", f, j), reasonPasswordEmpty)
			}
		}
		for j, r := range u.Rules {
			if err := aclRule(fmt.Sprintf("%s.Rules[%d]", f, j), r); err != nil {
				return err
			}
		}
	}
	return nil
}

func userName(field, s string) error {
	if !userNameRE.MatchString(s) {
		return fieldErr(field, "must match %s, got %s", userNameRE, show(s))
	}
	return nil
}

func aclRule(field, r string) error {
	if aclRuleRE.MatchString(r) {
		return nil
	}
	if r == "nopass" || r == "resetpass" || (r != "" && (r[0] == '>' || r[0] == '<' || r[0] == '#' || r[0] == '!')) {
		return fieldErr(field, reasonRulePassword)
	}
	return fieldErr(field, "must be a command, category, key or channel rule matching %s, got %s", aclRuleRE, show(r))
}

// users writes one `user` line per user, the default user first and
// always disabled:
//
//	user "default" off resetpass
//	user "<name>" on "#<sha256 hex>"... "<rule>"...
//
// A user without passwords is off (and resetpass, so it is not nopass
// either: protected-mode never sees a password-less default user).
// Passwords only ever appear as their SHA-256, never in clear text.
func (c *conf) users(users []acl.User) {
	c.directive("user", str(acl.DefaultUser), kw("off"), kw("resetpass"))
	for _, u := range users {
		if u.Name == acl.DefaultUser {
			continue // validated to be disabled, written above
		}
		args := []token{str(u.Name), kw("on")}
		if len(u.Passwords) == 0 {
			args = []token{str(u.Name), kw("off"), kw("resetpass")}
		}
		for _, h := range u.Hashes() {
			args = append(args, str("#"+h))
		}
		for _, r := range u.Rules {
			args = append(args, str(r))
		}
		c.directive("user", args...)
	}
}
