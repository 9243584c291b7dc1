package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/api"
)

// InitOptions are the accounts `picket init` seeds.
type InitOptions struct {
	AdminUsername, AdminPassword string
	AgentUsername, AgentPassword string
}

// ErrAlreadyInitialized is returned by Initialize on a cluster that was seeded before.
var ErrAlreadyInitialized = errors.New("cluster is already initialized")

var initKey = etcdx.Key("meta", "initialized")

// Initialize seeds a new cluster: the default namespace, an admin user in the
// cluster-admins group and an agent user in system:agents. Running it again changes
// nothing and returns ErrAlreadyInitialized; an interrupted run is finished by the next.
func Initialize(ctx context.Context, store *etcdx.Store, opts InitOptions) error {
	if _, err := store.Get(ctx, initKey); err == nil {
		return ErrAlreadyInitialized
	} else if !errors.Is(err, etcdx.ErrNotFound) {
		return fmt.Errorf("read %s: %w", initKey, err)
	}
	put := func(kind, name string, res events.Resource) error {
		if err := res.Validate(); err != nil {
			return fmt.Errorf("%s %s: %w", kind, name, err)
		}
		val, err := json.Marshal(res)
		if err != nil {
			return err
		}
		if _, err := store.Create(ctx, etcdx.Key(kind, name), val); err != nil && !errors.Is(err, etcdx.ErrExists) {
			return fmt.Errorf("create %s %s: %w", kind, name, err)
		}
		return nil
	}
	ns := &events.Namespace{Name: "default"}
	events.SetDefaults(ns, "")
	if err := put("namespaces", "default", ns); err != nil {
		return err
	}
	for _, u := range []struct {
		name, pass, group string
	}{
		{opts.AdminUsername, opts.AdminPassword, "cluster-admins"},
		{opts.AgentUsername, opts.AgentPassword, "system:agents"},
	} {
		hash, err := api.HashPassword(u.pass)
		if err != nil {
			return err
		}
		user := &events.User{Username: u.name, Password: u.pass, Groups: []string{u.group}}
		events.SetDefaults(user, "")
		if err := user.Validate(); err != nil {
			return fmt.Errorf("user %s: %w", u.name, err)
		}
		user.Password, user.PasswordHash = "", hash
		if err := put("users", u.name, user); err != nil {
			return err
		}
	}
	stamp, _ := json.Marshal(map[string]any{"initialized_at": time.Now().UTC().Format(time.RFC3339), "admin": opts.AdminUsername})
	if _, err := store.Create(ctx, initKey, stamp); err != nil && !errors.Is(err, etcdx.ErrExists) {
		return fmt.Errorf("mark cluster initialized: %w", err)
	}
	return nil
}
