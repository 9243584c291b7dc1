package app

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/picketmon/picket/events"
)

// sysRoot is prefixed to every file sysinfo reads, so tests can fake a host.
var sysRoot = "/"

// systemInfo gathers the facts an agent reports about its host: host name, OS,
// distribution (from /etc/os-release), architecture, C library, virtualisation where it
// is cheap to tell, and network interfaces. Facts it cannot learn stay empty.
func systemInfo() events.System {
	s := events.System{OS: runtime.GOOS, Arch: runtime.GOARCH}
	s.Hostname, _ = os.Hostname()
	if runtime.GOOS == "linux" {
		if f, err := os.Open(filepath.Join(sysRoot, "etc/os-release")); err == nil {
			rel := parseOSRelease(f)
			f.Close()
			s.Platform = rel["ID"]
			s.PlatformVersion = rel["VERSION_ID"]
			s.PlatformFamily = platformFamily(rel["ID"], rel["ID_LIKE"])
		}
		s.LibCType = libcType(sysRoot)
		s.VMSystem, s.VMRole = virtualization(sysRoot)
	}
	if runtime.GOARCH == "arm" {
		s.ARMVersion = armVersion()
	}
	s.Network.Interfaces = interfaces()
	return s
}

// parseOSRelease reads the KEY=value lines of os-release(5), unquoting values.
func parseOSRelease(r io.Reader) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `'"`)
		}
		out[strings.TrimSpace(k)] = v
	}
	return out
}

// familyMembers lists, per platform family Sensu (gopsutil) reports, the distribution
// ids that belong to it.
var familyMembers = map[string][]string{
	"debian":    {"debian", "ubuntu", "linuxmint", "raspbian", "pop", "kali", "devuan"},
	"rhel":      {"rhel", "centos", "rocky", "almalinux", "ol", "oracle", "amzn", "scientific", "xenserver", "cloudlinux"},
	"fedora":    {"fedora"},
	"suse":      {"sles", "sled", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "suse"},
	"arch":      {"arch", "manjaro", "endeavouros"},
	"alpine":    {"alpine"},
	"gentoo":    {"gentoo"},
	"slackware": {"slackware"},
	"nixos":     {"nixos"},
	"void":      {"void"},
}

// families maps a distribution id to its platform family.
var families = func() map[string]string {
	m := map[string]string{}
	for family, ids := range familyMembers {
		for _, id := range ids {
			m[id] = family
		}
	}
	return m
}()

// platformFamily derives the family from ID, else from the first known ID_LIKE entry.
func platformFamily(id, idLike string) string {
	if f, ok := families[strings.ToLower(id)]; ok {
		return f
	}
	for _, like := range strings.Fields(strings.ToLower(idLike)) {
		if f, ok := families[like]; ok {
			return f
		}
	}
	return ""
}

// libcType tells musl from glibc by the dynamic loader present on the host.
func libcType(root string) string {
	if m, _ := filepath.Glob(filepath.Join(root, "lib/ld-musl-*.so.1")); len(m) > 0 {
		return "musl"
	}
	for _, pattern := range []string{"lib*/ld-linux*.so.*", "lib/*/ld-linux*.so.*", "lib*/libc.so.6", "lib/*/libc.so.6", "usr/lib*/libc.so.6", "usr/lib/*/libc.so.6"} {
		if m, _ := filepath.Glob(filepath.Join(root, pattern)); len(m) > 0 {
			return "glibc"
		}
	}
	return ""
}

// virtualization guesses the hypervisor or container a host runs in from files that are
// cheap to read: container markers, then the DMI product and vendor names. Role is
// "guest" when something was found, and both are empty otherwise.
func virtualization(root string) (system, role string) {
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(root, p)); return err == nil }
	read := func(p string) string {
		b, _ := os.ReadFile(filepath.Join(root, p))
		return strings.ToLower(strings.TrimSpace(string(b)))
	}
	switch {
	case exists(".dockerenv"):
		return "docker", "guest"
	case exists("run/.containerenv"):
		return "podman", "guest"
	}
	if strings.Contains(read("proc/1/environ"), "container=lxc") {
		return "lxc", "guest"
	}
	dmi := read("sys/class/dmi/id/product_name") + " " + read("sys/class/dmi/id/sys_vendor")
	for _, m := range []struct{ needle, system string }{
		{"kvm", "kvm"}, {"qemu", "kvm"}, {"virtualbox", "vbox"}, {"vmware", "vmware"},
		{"hvm domu", "xen"}, {"xen", "xen"}, {"amazon ec2", "kvm"}, {"google compute engine", "kvm"},
		{"virtual machine", "hyperv"}, {"bochs", "bochs"}, {"parallels", "parallels"},
	} {
		if strings.Contains(dmi, m.needle) {
			return m.system, "guest"
		}
	}
	return "", ""
}

// armVersion reports the GOARM the binary was built for (5, 6 or 7).
func armVersion() int32 {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" {
				if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(s.Value, ",softfloat"), ",hardfloat")); err == nil {
					return int32(n)
				}
			}
		}
	}
	return 7
}

// interfaces lists the network interfaces with their MAC and addresses in CIDR form.
func interfaces() []events.NetworkInterface {
	ifs, err := net.Interfaces()
	if err != nil {
		return []events.NetworkInterface{}
	}
	out := make([]events.NetworkInterface, 0, len(ifs))
	for _, ifc := range ifs {
		ni := events.NetworkInterface{Name: ifc.Name, MAC: ifc.HardwareAddr.String(), Addresses: []string{}}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ni.Addresses = append(ni.Addresses, ipn.String())
			}
		}
		out = append(out, ni)
	}
	return out
}
