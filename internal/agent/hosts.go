package agent

import (
	"net/netip"
	"strings"
)

// hostsFile renders /etc/hosts as reference §8.2 step 6 does: loopback
// lines carrying the hostname, the host alias on each gateway address, and
// the four standard IPv6 lines. agentd rewrites the file on every boot.
func hostsFile(hostname, alias string, gw4, gw6 netip.Addr) string {
	var b strings.Builder
	line := func(fields ...string) {
		b.WriteString(strings.Join(fields, " "))
		b.WriteByte('\n')
	}
	withHost := func(fields ...string) []string {
		if hostname != "" {
			fields = append(fields, hostname)
		}
		return fields
	}
	line(withHost("127.0.0.1", "localhost")...)
	line(withHost("::1", "localhost", "ip6-localhost", "ip6-loopback")...)
	if alias != "" {
		for _, gw := range []netip.Addr{gw4, gw6} {
			if gw.IsValid() {
				line(gw.String(), alias)
			}
		}
	}
	line("fe00::0", "ip6-localnet")
	line("ff00::0", "ip6-mcastprefix")
	line("ff02::1", "ip6-allnodes")
	line("ff02::2", "ip6-allrouters")
	return b.String()
}

// resolvConf renders /etc/resolv.conf from the configured DNS servers, or
// "" when there are none.
func resolvConf(servers ...netip.Addr) string {
	var b strings.Builder
	for _, s := range servers {
		if s.IsValid() {
			b.WriteString("nameserver " + s.String() + "\n")
		}
	}
	return b.String()
}

// Markers of the block agentd keeps in /etc/profile.
const (
	profileBegin = "# >>> msb scripts >>>"
	profileEnd   = "# <<< msb scripts <<<"
)

// scriptsDir holds the sandbox's scripts; it leads every exec's PATH.
const scriptsDir = "/.msb/scripts"

// profileWithScripts returns /etc/profile with a marked block that puts the
// scripts dir first in PATH for login shells (which reset PATH), appended
// once: an existing block is left as it is.
func profileWithScripts(profile string) string {
	if strings.Contains(profile, profileBegin) {
		return profile
	}
	if profile != "" && !strings.HasSuffix(profile, "\n") {
		profile += "\n"
	}
	return profile + profileBegin + "\n" +
		`case ":$PATH:" in *":` + scriptsDir + `:"*) ;; *) PATH="` + scriptsDir + `:$PATH"; export PATH ;; esac` + "\n" +
		profileEnd + "\n"
}
