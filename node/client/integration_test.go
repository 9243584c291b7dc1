package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/picketmon/picket/events"
	"github.com/picketmon/picket/node/client"
	"github.com/picketmon/picket/node/nodetest"
)

func TestClientAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real node")
	}
	n := nodetest.StartWith(t, nodetest.Options{AccessTokenTTL: 2 * time.Second})
	ctx := context.Background()
	dir := t.TempDir()

	// A clock stuck in the past never refreshes ahead of time, so the expired token
	// reaches the server and the 401 path is what refreshes it.
	past := func() time.Time { return time.Unix(0, 0) }
	c, err := client.New(client.Config{APIURL: n.URL}, client.Options{ConfigDir: dir, Now: past})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, nodetest.AdminUser, "wrong password"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if err := c.Login(ctx, nodetest.AdminUser, nodetest.AdminPassword); err != nil {
		t.Fatal(err)
	}
	first := c.Config()
	if saved, _ := client.Load(dir); saved.AccessToken != first.AccessToken || saved.Username != nodetest.AdminUser {
		t.Fatalf("login did not save the session: %+v", saved)
	}

	checks, _ := events.LookupKind("checks")
	check := map[string]any{
		"metadata": map[string]any{"name": "cpu", "namespace": "default"},
		"command":  "true", "interval": 10, "subscriptions": []string{"linux"},
	}
	if err := c.Put(ctx, checks, "default", "cpu", check); err != nil {
		t.Fatal(err)
	}

	time.Sleep(3 * time.Second) // the access token expires
	if _, err := c.Get(ctx, checks, "default", "cpu"); err != nil {
		t.Fatalf("get after the access token expired: %v", err)
	}
	second := c.Config()
	if second.AccessToken == first.AccessToken {
		t.Fatal("the access token was not refreshed")
	}
	if saved, _ := client.Load(dir); saved.AccessToken != second.AccessToken {
		t.Error("the refreshed token was not saved")
	}

	// With the real clock, a token that expires within 10 s is refreshed before use.
	c2, err := client.New(second, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.List(ctx, checks, ""); err != nil {
		t.Fatal(err)
	}
	if c2.Config().AccessToken == second.AccessToken {
		t.Error("a nearly expired token was not refreshed ahead of time")
	}

	// A copy of the session from before the logout: its refresh token must stop working.
	stale, err := client.New(c2.Config(), client.Options{Now: past})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.List(ctx, checks, ""); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Errorf("list after logout: err = %v, want ErrNotLoggedIn", err)
	}
	time.Sleep(3 * time.Second) // the stale copy's access token expires
	if _, err := stale.Get(ctx, checks, "default", "cpu"); !errors.Is(err, client.ErrSessionExpired) {
		t.Errorf("refresh with a logged-out refresh token: err = %v, want ErrSessionExpired", err)
	}
}
