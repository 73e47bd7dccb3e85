package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// BootEnvPath is the file the host appends to the initramfs for values that
// must not appear on the kernel command line (long or secret ones).
const BootEnvPath = "/msb/boot.env"

// maxBootEnvSize bounds what agentd reads from BootEnvPath.
const maxBootEnvSize = 4 << 20

// Config is agentd's typed configuration, parsed from the MSB_* variables of
// reference §8.1. The zero value means: the initramfs is the root, no extra
// mounts, no network besides loopback, root as the default exec user.
type Config struct {
	BlockRoot  *BlockRoot   // MSB_BLOCK_ROOT
	FSRoot     *FSRoot      // MSB_FS_ROOT
	DirMounts  []DirMount   // MSB_DIR_MOUNTS
	FileMounts []FileMount  // MSB_FILE_MOUNTS
	DiskMounts []DiskMount  // MSB_DISK_MOUNTS
	Tmpfs      []TmpfsMount // MSB_TMPFS
	Hostname   string       // MSB_HOSTNAME
	HostAlias  string       // MSB_HOST_ALIAS
	Net        *NetConfig   // MSB_NET
	IPv4       *IPConfig    // MSB_NET_IPV4
	IPv6       *IPConfig    // MSB_NET_IPV6
	Rlimits    []Rlimit     // MSB_RLIMITS
	User       string       // MSB_USER, "" = root
	Probe      bool         // MSB_PROBE=1: print the probe line and power off
	LogLevel   string       // MSB_LOG_LEVEL: error, warn, info, debug or trace; "" = warn
	Init       *InitSpec    // MSB_INIT: a real init to run as PID 1
	// ClockNs is the host's wall clock (ns since the Unix epoch) when it
	// built the boot environment (MSB_CLOCK_NS); 0 = unset. The guest has
	// no RTC, so without it the clock starts in 1970 and TLS fails.
	ClockNs int64

	// Env is the default environment of every exec: the non-MSB entries of
	// the process environment overlaid by those of the boot.env file.
	Env []string
}

// Block root kinds.
const (
	BlockRootDiskImage = "disk-image"
	BlockRootOCIErofs  = "oci-erofs"
)

// BlockRoot describes the root filesystem on block devices.
type BlockRoot struct {
	Kind        string // BlockRootDiskImage or BlockRootOCIErofs
	Device      string // disk-image: the device
	FSType      string // disk-image: optional filesystem type ("" = probe)
	Lower       string // oci-erofs: the read-only EROFS device
	Upper       string // oci-erofs: the writable upper device
	UpperFSType string // oci-erofs: filesystem of the upper device
}

// FSRoot is a virtio-fs share that becomes the root: the host directory
// itself, live (`msb run --rootfs-live`). Writes land in the host directory
// unless ReadOnly, where a tmpfs overlay above the share keeps them in guest
// memory (init itself writes /etc/hosts).
type FSRoot struct {
	Tag      string
	ReadOnly bool
}

// DirMount is a virtio-fs share mounted at Path.
type DirMount struct {
	Tag      string
	Path     string
	ReadOnly bool
}

// FileMount is one file of a virtio-fs share bind-mounted at Path.
type FileMount struct {
	Tag      string
	File     string // file name inside the share
	Path     string
	ReadOnly bool
}

// DiskMount is a virtio-blk device, found by serial, mounted at Path.
type DiskMount struct {
	ID       string // virtio-blk serial
	Path     string
	FSType   string // "" = probe
	ReadOnly bool
}

// TmpfsMount is a tmpfs mounted at Path.
type TmpfsMount struct {
	Path     string
	SizeMiB  uint64 // 0 = kernel default
	Mode     uint32 // permission bits
	NoExec   bool
	ReadOnly bool
}

// NetConfig is the guest network interface.
type NetConfig struct {
	Iface string
	MAC   net.HardwareAddr
	MTU   int
}

// IPConfig is one address family's configuration.
type IPConfig struct {
	Addr    netip.Prefix
	Gateway netip.Addr // zero = no default route
	DNS     netip.Addr // zero = none
}

// Rlimit is one resource limit. Resource is the lowercase name without the
// RLIMIT_ prefix.
type Rlimit struct {
	Resource string
	Soft     uint64
	Hard     uint64
}

// InitSpec is the init of MSB_INIT: a JSON object {"path", "args",
// "env"}. Path is absolute or "auto" (InitCandidates).
type InitSpec struct {
	Path string   `json:"path"`
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
}

// InitCandidates are the inits "auto" tries, in order.
var InitCandidates = []string{"/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd"}

// ParseInit parses MSB_INIT. The host is trusted less than it seems (the
// value crossed a boot file), so it is checked like any guest input.
func ParseInit(v string) (*InitSpec, error) {
	var s InitSpec
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("want {\"path\":…,\"args\":[…],\"env\":[…]}: %w", err)
	}
	if s.Path != "auto" && !path.IsAbs(s.Path) {
		return nil, fmt.Errorf("path %q: want an absolute path or auto", truncate(s.Path, 64))
	}
	for _, a := range append(append([]string{s.Path}, s.Args...), s.Env...) {
		if strings.ContainsRune(a, 0) {
			return nil, errors.New("NUL in an argument")
		}
	}
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("env %q: want KEY=VALUE", truncate(kv, 64))
		}
	}
	return &s, nil
}

// RlimInfinity is the "unlimited" value of an Rlimit.
const RlimInfinity = ^uint64(0)

// rlimitNames are the resources MSB_RLIMITS and exec requests may name.
var rlimitNames = []string{
	"cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile",
	"memlock", "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime",
}

// LoadConfig builds the Config from the process environment and, overriding
// it, the NUL-separated K=V entries of the file at bootEnvPath if it exists.
func LoadConfig(environ []string, bootEnvPath string) (Config, error) {
	env := slices.Clone(environ)
	data, err := readBounded(bootEnvPath, maxBootEnvSize)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return Config{}, fmt.Errorf("read %s: %w", bootEnvPath, err)
	default:
		extra, err := ParseBootEnv(data)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", bootEnvPath, err)
		}
		env = MergeEnv(env, extra)
	}
	return ParseConfig(env)
}

func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// ParseBootEnv splits the NUL-separated K=V entries of a boot.env file.
// Empty entries are skipped; an entry without '=' or with an empty key is an
// error.
func ParseBootEnv(data []byte) ([]string, error) {
	var out []string
	for i, e := range bytes.Split(data, []byte{0}) {
		if len(e) == 0 {
			continue
		}
		k, _, ok := bytes.Cut(e, []byte("="))
		if !ok || len(k) == 0 {
			return nil, fmt.Errorf("entry %d: want K=V, got %q", i, truncate(string(e), 64))
		}
		out = append(out, string(e))
	}
	return out, nil
}

// MergeEnv returns base overlaid by over: a key of over replaces the same key
// of base in place, new keys are appended in order. Later duplicates win.
func MergeEnv(base, over []string) []string {
	out := make([]string, 0, len(base)+len(over))
	idx := make(map[string]int, len(base)+len(over))
	add := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			return
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range base {
		add(kv)
	}
	for _, kv := range over {
		add(kv)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ParseConfig parses the MSB_* variables of env (K=V entries, later entries
// win). Empty values mean unset. Every other entry goes to Config.Env.
func ParseConfig(env []string) (Config, error) {
	var c Config
	vars := map[string]string{}
	for _, kv := range MergeEnv(nil, env) {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MSB_") {
			vars[k] = v
			continue
		}
		c.Env = append(c.Env, kv)
	}
	var errs []error
	parse := func(name string, fn func(string) error) {
		v := vars[name]
		if v == "" {
			return
		}
		if err := fn(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	parse("MSB_BLOCK_ROOT", func(v string) (err error) { c.BlockRoot, err = parseBlockRoot(v); return })
	parse("MSB_FS_ROOT", func(v string) (err error) { c.FSRoot, err = parseFSRoot(v); return })
	parse("MSB_DIR_MOUNTS", func(v string) (err error) { c.DirMounts, err = parseEntries(v, parseDirMount); return })
	parse("MSB_FILE_MOUNTS", func(v string) (err error) { c.FileMounts, err = parseEntries(v, parseFileMount); return })
	parse("MSB_DISK_MOUNTS", func(v string) (err error) { c.DiskMounts, err = parseEntries(v, parseDiskMount); return })
	parse("MSB_TMPFS", func(v string) (err error) { c.Tmpfs, err = parseEntries(v, parseTmpfs); return })
	parse("MSB_HOSTNAME", func(v string) (err error) { c.Hostname, err = parseHostname(v); return })
	parse("MSB_HOST_ALIAS", func(v string) (err error) { c.HostAlias, err = parseHostname(v); return })
	parse("MSB_NET", func(v string) (err error) { c.Net, err = parseNet(v); return })
	parse("MSB_NET_IPV4", func(v string) (err error) { c.IPv4, err = parseIP(v, false); return })
	parse("MSB_NET_IPV6", func(v string) (err error) { c.IPv6, err = parseIP(v, true); return })
	parse("MSB_RLIMITS", func(v string) (err error) { c.Rlimits, err = ParseRlimits(v); return })
	parse("MSB_USER", func(v string) (err error) { c.User, err = parseUserSpec(v); return })
	parse("MSB_INIT", func(v string) (err error) { c.Init, err = ParseInit(v); return })
	parse("MSB_LOG_LEVEL", func(v string) error {
		switch v {
		case "error", "warn", "info", "debug", "trace":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("want error, warn, info, debug or trace, got %q", truncate(v, 64))
	})
	parse("MSB_CLOCK_NS", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("want nanoseconds since the Unix epoch, got %q", truncate(v, 64))
		}
		c.ClockNs = n
		return nil
	})
	parse("MSB_PROBE", func(v string) error {
		switch v {
		case "1":
			c.Probe = true
		case "0":
		default:
			return fmt.Errorf("want 0 or 1, got %q", truncate(v, 64))
		}
		return nil
	})
	if c.BlockRoot != nil && c.FSRoot != nil {
		errs = append(errs, errors.New("MSB_BLOCK_ROOT and MSB_FS_ROOT both set: one root"))
	}
	if (c.IPv4 != nil || c.IPv6 != nil) && c.Net == nil {
		errs = append(errs, errors.New("MSB_NET_IPV4/MSB_NET_IPV6 set without MSB_NET"))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseEntries splits a ';'-separated list and parses each non-empty entry.
func parseEntries[T any](v string, fn func(string) (T, error)) ([]T, error) {
	var out []T
	for e := range strings.SplitSeq(v, ";") {
		if e == "" {
			continue
		}
		t, err := fn(e)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", truncate(e, 128), err)
		}
		out = append(out, t)
	}
	return out, nil
}

// keyValues parses "k=v,k=v" with unique keys from allowed.
func keyValues(v string, allowed ...string) (map[string]string, error) {
	m := map[string]string{}
	for kv := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("option %q: want key=value", truncate(kv, 64))
		}
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("unknown option %q", truncate(k, 64))
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate option %q", k)
		}
		m[k] = val
	}
	return m, nil
}

func parseBlockRoot(v string) (*BlockRoot, error) {
	m, err := keyValues(v, "kind", "device", "fstype", "lower", "upper", "upper_fstype")
	if err != nil {
		return nil, err
	}
	need := func(keys ...string) error {
		for _, k := range keys {
			if m[k] == "" {
				return fmt.Errorf("kind %s: missing %s", m["kind"], k)
			}
		}
		return nil
	}
	only := func(keys ...string) error {
		for k := range m {
			if !slices.Contains(keys, k) {
				return fmt.Errorf("kind %s: option %q not allowed", m["kind"], k)
			}
		}
		return nil
	}
	var br BlockRoot
	switch m["kind"] {
	case "":
		return nil, errors.New("missing kind")
	case BlockRootDiskImage:
		if err := need("device"); err != nil {
			return nil, err
		}
		if err := only("kind", "device", "fstype"); err != nil {
			return nil, err
		}
		br = BlockRoot{Kind: BlockRootDiskImage, Device: m["device"], FSType: m["fstype"]}
	case BlockRootOCIErofs:
		if err := need("lower", "upper", "upper_fstype"); err != nil {
			return nil, err
		}
		if err := only("kind", "lower", "upper", "upper_fstype"); err != nil {
			return nil, err
		}
		br = BlockRoot{Kind: BlockRootOCIErofs, Lower: m["lower"], Upper: m["upper"], UpperFSType: m["upper_fstype"]}
	default:
		return nil, fmt.Errorf("unknown kind %q", truncate(m["kind"], 64))
	}
	for _, d := range []string{br.Device, br.Lower, br.Upper} {
		if d != "" && !path.IsAbs(d) {
			return nil, fmt.Errorf("device %q: not an absolute path", truncate(d, 64))
		}
	}
	for _, t := range []string{br.FSType, br.UpperFSType} {
		if err := checkFSType(t); err != nil {
			return nil, err
		}
	}
	return &br, nil
}

// parseFSRoot parses "tag=T[,ro]" (",rw" is the default, spelled out).
func parseFSRoot(v string) (*FSRoot, error) {
	var r FSRoot
	seen := map[string]bool{}
	for opt := range strings.SplitSeq(v, ",") {
		k, val, hasValue := strings.Cut(opt, "=")
		if seen[k] || (seen["ro"] || seen["rw"]) && (k == "ro" || k == "rw") {
			return nil, fmt.Errorf("duplicate option %q", truncate(k, 64))
		}
		seen[k] = true
		switch {
		case k == "tag" && hasValue:
			if err := checkName("tag", val); err != nil {
				return nil, err
			}
			r.Tag = val
		case (k == "ro" || k == "rw") && !hasValue:
			r.ReadOnly = k == "ro"
		default:
			return nil, fmt.Errorf("unknown option %q (want tag=T[,ro])", truncate(opt, 64))
		}
	}
	if r.Tag == "" {
		return nil, errors.New("missing tag")
	}
	return &r, nil
}

func checkFSType(t string) error {
	if strings.ContainsAny(t, ",;:= \t\n\x00/") {
		return fmt.Errorf("fstype %q: invalid", truncate(t, 64))
	}
	return nil
}

// checkGuestPath validates a mount target: absolute, not "/", clean.
func checkGuestPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !path.IsAbs(p):
		return fmt.Errorf("path %q: not absolute", truncate(p, 64))
	case path.Clean(p) == "/":
		return errors.New("path \"/\" not allowed")
	case strings.ContainsRune(p, 0):
		return errors.New("path contains NUL")
	}
	return nil
}

func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("%s %q: invalid", what, truncate(s, 64))
	}
	return nil
}

func parseRO(s string) (bool, error) {
	switch s {
	case "ro":
		return true, nil
	case "rw":
		return false, nil
	}
	return false, fmt.Errorf("unknown flag %q (want ro)", truncate(s, 64))
}

func parseDirMount(e string) (DirMount, error) {
	f := strings.Split(e, ":")
	if len(f) < 2 || len(f) > 3 {
		return DirMount{}, errors.New("want tag:/path[:ro]")
	}
	m := DirMount{Tag: f[0], Path: f[1]}
	if err := checkName("tag", m.Tag); err != nil {
		return DirMount{}, err
	}
	if err := checkGuestPath(m.Path); err != nil {
		return DirMount{}, err
	}
	if len(f) == 3 {
		ro, err := parseRO(f[2])
		if err != nil {
			return DirMount{}, err
		}
		m.ReadOnly = ro
	}
	return m, nil
}

func parseFileMount(e string) (FileMount, error) {
	f := strings.Split(e, ":")
	if len(f) < 3 || len(f) > 4 {
		return FileMount{}, errors.New("want tag:file:/path[:ro]")
	}
	m := FileMount{Tag: f[0], File: f[1], Path: f[2]}
	if err := checkName("tag", m.Tag); err != nil {
		return FileMount{}, err
	}
	if err := checkName("file name", m.File); err != nil {
		return FileMount{}, err
	}
	if m.File == "." || m.File == ".." {
		return FileMount{}, fmt.Errorf("file name %q: invalid", m.File)
	}
	if err := checkGuestPath(m.Path); err != nil {
		return FileMount{}, err
	}
	if len(f) == 4 {
		ro, err := parseRO(f[3])
		if err != nil {
			return FileMount{}, err
		}
		m.ReadOnly = ro
	}
	return m, nil
}

// parseDiskMount parses the positional "id:/path[:fstype][:ro]". Read-only
// without a filesystem type is "id:/path::ro"; "id:/path:ro" means the same
// (there is no filesystem named "ro").
func parseDiskMount(e string) (DiskMount, error) {
	f := strings.Split(e, ":")
	if len(f) < 2 || len(f) > 4 {
		return DiskMount{}, errors.New("want id:/path[:fstype][:ro]")
	}
	m := DiskMount{ID: f[0], Path: f[1]}
	if err := checkName("id", m.ID); err != nil {
		return DiskMount{}, err
	}
	if err := checkGuestPath(m.Path); err != nil {
		return DiskMount{}, err
	}
	switch {
	case len(f) == 3 && f[2] == "ro":
		m.ReadOnly = true
	case len(f) >= 3:
		m.FSType = f[2]
		if err := checkFSType(m.FSType); err != nil {
			return DiskMount{}, err
		}
	}
	if len(f) == 4 {
		ro, err := parseRO(f[3])
		if err != nil {
			return DiskMount{}, err
		}
		m.ReadOnly = ro
	}
	return m, nil
}

// parseTmpfs parses "path[,size=MiB][,mode=octal][,noexec][,ro]".
func parseTmpfs(e string) (TmpfsMount, error) {
	f := strings.Split(e, ",")
	m := TmpfsMount{Path: f[0], Mode: 0o755}
	if err := checkGuestPath(m.Path); err != nil {
		return TmpfsMount{}, err
	}
	if c := path.Clean(m.Path); c == "/tmp" || c == "/var/tmp" {
		m.Mode = 0o1777
	}
	seen := map[string]bool{}
	for _, opt := range f[1:] {
		k, v, hasV := strings.Cut(opt, "=")
		if seen[k] {
			return TmpfsMount{}, fmt.Errorf("duplicate option %q", truncate(k, 64))
		}
		seen[k] = true
		switch {
		case k == "size" && hasV:
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 || n > 1<<30 {
				return TmpfsMount{}, fmt.Errorf("bad size %q (want MiB, 1..%d)", truncate(v, 64), 1<<30)
			}
			m.SizeMiB = n
		case k == "mode" && hasV:
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil || n > 0o7777 {
				return TmpfsMount{}, fmt.Errorf("bad mode %q (want octal ≤ 7777)", truncate(v, 64))
			}
			m.Mode = uint32(n)
		case k == "noexec" && !hasV:
			m.NoExec = true
		case k == "ro" && !hasV:
			m.ReadOnly = true
		case k == "rw" && !hasV:
		default:
			return TmpfsMount{}, fmt.Errorf("unknown option %q", truncate(opt, 64))
		}
	}
	return m, nil
}

// parseHostname accepts an RFC 1123 host name (labels of letters, digits and
// hyphens, at most 64 bytes as sethostname allows).
func parseHostname(v string) (string, error) {
	if len(v) > 64 {
		return "", fmt.Errorf("%q: longer than 64 bytes", truncate(v, 64))
	}
	for label := range strings.SplitSeq(v, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%q: invalid host name", v)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("%q: invalid host name", v)
			}
		}
	}
	return v, nil
}

func parseNet(v string) (*NetConfig, error) {
	m, err := keyValues(v, "iface", "mac", "mtu")
	if err != nil {
		return nil, err
	}
	n := NetConfig{Iface: m["iface"], MTU: 1500}
	if n.Iface == "" {
		return nil, errors.New("missing iface")
	}
	if len(n.Iface) > 15 || strings.ContainsAny(n.Iface, "/: \t\n\x00") {
		return nil, fmt.Errorf("iface %q: invalid", truncate(n.Iface, 64))
	}
	if m["mac"] == "" {
		return nil, errors.New("missing mac")
	}
	mac, err := net.ParseMAC(m["mac"])
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("mac %q: invalid", truncate(m["mac"], 64))
	}
	n.MAC = mac
	if s, ok := m["mtu"]; ok {
		mtu, err := strconv.Atoi(s)
		if err != nil || mtu < 68 || mtu > 65535 {
			return nil, fmt.Errorf("mtu %q: want 68..65535", truncate(s, 64))
		}
		n.MTU = mtu
	}
	return &n, nil
}

func parseIP(v string, v6 bool) (*IPConfig, error) {
	m, err := keyValues(v, "addr", "gw", "dns")
	if err != nil {
		return nil, err
	}
	fam := "4"
	if v6 {
		fam = "6"
	}
	valid := func(a netip.Addr) bool {
		if v6 {
			return a.Is6() && !a.Is4In6() && a.Zone() == ""
		}
		return a.Is4()
	}
	var c IPConfig
	if m["addr"] == "" {
		return nil, errors.New("missing addr")
	}
	c.Addr, err = netip.ParsePrefix(m["addr"])
	if err != nil || !valid(c.Addr.Addr()) {
		return nil, fmt.Errorf("addr %q: want an IPv%s CIDR", truncate(m["addr"], 64), fam)
	}
	for _, k := range []string{"gw", "dns"} {
		s, ok := m[k]
		if !ok {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !valid(a) {
			return nil, fmt.Errorf("%s %q: want an IPv%s address", k, truncate(s, 64), fam)
		}
		if k == "gw" {
			c.Gateway = a
		} else {
			c.DNS = a
		}
	}
	return &c, nil
}

// ParseRlimits parses "name=soft[:hard];…". Values are decimal or
// "unlimited"/"infinity"; hard defaults to soft; soft must not exceed hard.
func ParseRlimits(v string) ([]Rlimit, error) {
	var out []Rlimit
	for e := range strings.SplitSeq(v, ";") {
		if e == "" {
			continue
		}
		name, val, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("entry %q: want name=soft[:hard]", truncate(e, 64))
		}
		name = strings.ToLower(strings.TrimPrefix(strings.ToUpper(name), "RLIMIT_"))
		if !slices.Contains(rlimitNames, name) {
			return nil, fmt.Errorf("entry %q: unknown resource %q", truncate(e, 64), truncate(name, 64))
		}
		if slices.ContainsFunc(out, func(r Rlimit) bool { return r.Resource == name }) {
			return nil, fmt.Errorf("entry %q: duplicate resource %q", truncate(e, 64), name)
		}
		softS, hardS, hasHard := strings.Cut(val, ":")
		soft, err := parseRlimValue(softS)
		if err != nil {
			return nil, fmt.Errorf("entry %q: soft: %w", truncate(e, 64), err)
		}
		hard := soft
		if hasHard {
			if hard, err = parseRlimValue(hardS); err != nil {
				return nil, fmt.Errorf("entry %q: hard: %w", truncate(e, 64), err)
			}
		}
		if soft > hard {
			return nil, fmt.Errorf("entry %q: soft limit above hard limit", truncate(e, 64))
		}
		out = append(out, Rlimit{Resource: name, Soft: soft, Hard: hard})
	}
	return out, nil
}

func parseRlimValue(s string) (uint64, error) {
	switch s {
	case "unlimited", "infinity":
		return RlimInfinity, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a number or unlimited", truncate(s, 64))
	}
	return n, nil
}

// parseUserSpec validates "user|uid[:group|gid]".
func parseUserSpec(v string) (string, error) {
	u, g, hasG := strings.Cut(v, ":")
	if u == "" || (hasG && g == "") || strings.ContainsAny(v, " \t\n\x00/") || strings.Count(v, ":") > 1 {
		return "", fmt.Errorf("%q: want user|uid[:group|gid]", truncate(v, 64))
	}
	return v, nil
}
