package app

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestParseOSRelease(t *testing.T) {
	rel := parseOSRelease(strings.NewReader(`# comment
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
ID_LIKE='rhel fedora'
BROKEN
`))
	for k, want := range map[string]string{"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID_LIKE": "rhel fedora"} {
		if rel[k] != want {
			t.Errorf("%s = %q, want %q", k, rel[k], want)
		}
	}
}

func TestPlatformFamily(t *testing.T) {
	for _, tt := range []struct{ id, like, want string }{
		{"debian", "", "debian"},
		{"ubuntu", "debian", "debian"},
		{"rocky", "rhel centos fedora", "rhel"},
		{"fedora", "", "fedora"},
		{"amzn", "centos rhel fedora", "rhel"},
		{"opensuse-leap", "suse opensuse", "suse"},
		{"alpine", "", "alpine"},
		{"elementary", "ubuntu debian", "debian"},
		{"Arch", "", "arch"},
		{"unknownos", "", ""},
	} {
		if got := platformFamily(tt.id, tt.like); got != tt.want {
			t.Errorf("platformFamily(%q, %q) = %q, want %q", tt.id, tt.like, got, tt.want)
		}
	}
}

func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestLibcType(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"musl", map[string]string{"lib/ld-musl-x86_64.so.1": ""}, "musl"},
		{"glibc multiarch", map[string]string{"lib/x86_64-linux-gnu/libc.so.6": ""}, "glibc"},
		{"glibc loader", map[string]string{"lib64/ld-linux-x86-64.so.2": ""}, "glibc"},
		{"glibc usr/lib", map[string]string{"usr/lib64/libc.so.6": ""}, "glibc"},
		{"neither", map[string]string{"etc/hostname": "x"}, ""},
	} {
		if got := libcType(fakeRoot(t, tt.files)); got != tt.want {
			t.Errorf("%s: libcType = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestVirtualization(t *testing.T) {
	for _, tt := range []struct {
		name             string
		files            map[string]string
		system, wantRole string
	}{
		{"docker", map[string]string{".dockerenv": ""}, "docker", "guest"},
		{"podman", map[string]string{"run/.containerenv": ""}, "podman", "guest"},
		{"kvm", map[string]string{"sys/class/dmi/id/product_name": "KVM\n", "sys/class/dmi/id/sys_vendor": "Red Hat\n"}, "kvm", "guest"},
		{"qemu", map[string]string{"sys/class/dmi/id/product_name": "Standard PC (Q35 + ICH9, 2009)", "sys/class/dmi/id/sys_vendor": "QEMU"}, "kvm", "guest"},
		{"vmware", map[string]string{"sys/class/dmi/id/product_name": "VMware Virtual Platform"}, "vmware", "guest"},
		{"virtualbox", map[string]string{"sys/class/dmi/id/product_name": "VirtualBox"}, "vbox", "guest"},
		{"bare metal", map[string]string{"sys/class/dmi/id/product_name": "ThinkPad X1", "sys/class/dmi/id/sys_vendor": "LENOVO"}, "", ""},
	} {
		sys, role := virtualization(fakeRoot(t, tt.files))
		if sys != tt.system || role != tt.wantRole {
			t.Errorf("%s: virtualization = %q %q, want %q %q", tt.name, sys, role, tt.system, tt.wantRole)
		}
	}
}

func TestSystemInfoOfThisHost(t *testing.T) {
	s := systemInfo()
	host, _ := os.Hostname()
	if s.Hostname != host || s.OS != runtime.GOOS || s.Arch != runtime.GOARCH {
		t.Fatalf("system = %+v", s)
	}
	found := false
	for _, ifc := range s.Network.Interfaces {
		for _, a := range ifc.Addresses {
			if a == "127.0.0.1/8" {
				found = true
			}
			if !strings.Contains(a, "/") {
				t.Errorf("address %q of %s is not in CIDR form", a, ifc.Name)
			}
		}
	}
	if !found {
		t.Errorf("loopback 127.0.0.1/8 not among the interfaces: %+v", s.Network.Interfaces)
	}
	if runtime.GOOS == "linux" {
		if _, err := os.Stat("/etc/os-release"); err == nil && s.Platform == "" {
			t.Error("platform not read from /etc/os-release")
		}
	}
}
