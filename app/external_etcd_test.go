package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/picketmon/picket/etcdx"
)

// externalEtcd is the Debian etcd-server's /usr/bin/etcd, run by the test on free
// loopback ports.
const externalEtcd = "/usr/bin/etcd"

// startExternalEtcd runs /usr/bin/etcd in dir with authentication on: a root user and a
// user "picket" whose role may read and write only the /picket/ key range.
func startExternalEtcd(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(externalEtcd); err != nil {
		t.Skipf("external etcd tests need %s (Debian package etcd-server, installed by .ci/run): %v", externalEtcd, err)
	}
	ports := freePortsOn(t, "127.0.0.1", 2)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmd := exec.Command(externalEtcd, "--name", "ext", "--data-dir", filepath.Join(t.TempDir(), "ext.etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "ext="+peer,
		"--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	cli, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: []string{client}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		if _, err := cli.Get(ctx, "ping"); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("etcd exited:\n%s", out.String())
		case <-ctx.Done():
			t.Fatalf("etcd not ready:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "picket_rw"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "picket_rw", "/picket/", clientv3.GetPrefixRangeEnd("/picket/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "picket", "picket-secret"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "picket", "picket_rw"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
	return client
}

func TestExternalEtcdWithAuth(t *testing.T) {
	bin := picketBinary(t)
	etcdURL := startExternalEtcd(t)
	ports := freePortsOn(t, "127.0.0.1", 2)
	args := []string{"--no-embed-etcd", "--etcd-client-urls", etcdURL, "--etcd-name", "ext-server",
		"--state-dir", t.TempDir(), "--api-listen-address", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--agent-port", fmt.Sprint(ports[1]),
		"--agent-host", "127.0.0.1"}
	api := fmt.Sprintf("http://127.0.0.1:%d", ports[0])

	t.Run("wrong credentials fail at start and say so", func(t *testing.T) {
		t.Setenv("PICKET_BACKEND_ETCD_CLIENT_USERNAME", "picket")
		t.Setenv("PICKET_BACKEND_ETCD_CLIENT_PASSWORD", "wrong")
		p := startClusterProc(t, bin, append([]string{"server"}, args...)...)
		if code := p.exitWithin(t, 30*time.Second); code != 1 {
			t.Fatalf("exit %d:\n%s", code, p.out.String())
		}
		out := p.out.String()
		if !strings.Contains(out, "authentication failed") || !strings.Contains(out, "PICKET_BACKEND_ETCD_CLIENT_PASSWORD") {
			t.Fatalf("message does not name the problem:\n%s", out)
		}
	})

	t.Run("a user limited to /picket/ runs a server end to end", func(t *testing.T) {
		t.Setenv("PICKET_BACKEND_ETCD_CLIENT_USERNAME", "picket")
		t.Setenv("PICKET_BACKEND_ETCD_CLIENT_PASSWORD", "picket-secret")
		out, code := runPicket(t, bin, []string{"PICKET_BACKEND_CLUSTER_ADMIN_PASSWORD=ext-admin-pass"}, "init", "--etcd-client-urls", etcdURL)
		if code != 0 {
			t.Fatalf("init: %s", out)
		}
		p := startClusterProc(t, bin, append([]string{"server"}, args...)...)
		p.waitFor(t, "picket server ready", 30*time.Second)
		token := httpToken(t, api, "admin", "ext-admin-pass")
		if st, body := httpDo(t, "POST", api+"/api/core/v2/namespaces/default/checks", token,
			`{"metadata":{"name":"ext"},"command":"true","interval":1,"publish":true,"subscriptions":["x"]}`); st != 201 {
			t.Fatalf("create check: %d %s", st, body)
		}
		// The elected publisher works within /picket/: its request key appears.
		deadline := time.Now().Add(15 * time.Second)
		for {
			st, body := httpDo(t, "GET", api+"/info", token, "")
			if st == 200 && strings.Contains(body, `"check-request-publisher":"ext-server"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("info: %d %s\n%s", st, body, p.out.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
		cli, err := etcdx.NewClient(etcdx.ClientConfig{Endpoints: []string{etcdURL}, Username: "root", Password: "root-secret"})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		resp, err := cli.Get(t.Context(), "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if !strings.HasPrefix(string(kv.Key), "/picket/") {
				t.Errorf("key outside /picket/: %q", kv.Key)
			}
		}
		if st, body := httpDo(t, "GET", api+"/health", token, ""); st != http.StatusOK || !strings.Contains(body, `"Healthy":true`) {
			t.Fatalf("health: %d %s", st, body)
		}
		p.signal(syscall.SIGTERM)
		if code := p.exitWithin(t, 15*time.Second); code != 0 {
			t.Fatalf("exit %d:\n%s", code, p.out.String())
		}
	})
}
