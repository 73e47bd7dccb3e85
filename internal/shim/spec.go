package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/machine"
)

// process is what the shim runs in the guest, taken from the OCI spec.
type process struct {
	Args     []string
	Env      []string // KEY=VALUE
	Cwd      string
	User     string // "uid:gid" for the agent
	Terminal bool
	// Rows and Cols are the terminal's first size: the spec's consoleSize,
	// else 24x80 until containerd's first ResizePty.
	Rows, Cols uint16
	Hostname   string
	// Rlimits are the spec's RLIMIT_* as msb names them ("nofile"…).
	Rlimits []rlimit
	// NetNS is the network namespace the spec names by path (a pod's,
	// which the CRI and `ctr run --with-ns network:PATH` set): the
	// sandbox process runs there. A network namespace without a path asks
	// runc for a new, empty one; msb keeps its own network then.
	NetNS string
}

// readSpec reads bundle/config.json.
func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse spec: %w", err)
	}
	return &s, nil
}

// processFromSpec maps the spec's process onto a guest command. The guest
// has its own kernel, so namespaces, cgroups, capabilities, seccomp and
// mounts in the spec do not apply; the parts that describe the command do.
func processFromSpec(s *specs.Spec) (process, error) {
	if s.Process == nil {
		return process{}, errors.New("spec has no process")
	}
	p := s.Process
	if len(p.Args) == 0 {
		if p.CommandLine != "" {
			return process{}, errors.New("spec process: commandLine (Windows) is not supported")
		}
		return process{}, errors.New("spec process has no args")
	}
	for _, kv := range p.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return process{}, fmt.Errorf("spec process env %q: want KEY=VALUE", kv)
		}
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !strings.HasPrefix(cwd, "/") {
		return process{}, fmt.Errorf("spec process cwd %q: not absolute", cwd)
	}
	if p.User.Username != "" {
		// Only Windows specs carry a user name; Linux ones carry ids,
		// resolved by containerd from the image's /etc/passwd.
		return process{}, fmt.Errorf("spec process user %q: a user name is not supported, only uid and gid", p.User.Username)
	}
	rls, err := rlimitsFromSpec(p.Rlimits)
	if err != nil {
		return process{}, err
	}
	rows, cols := uint16(24), uint16(80)
	if cs := p.ConsoleSize; cs != nil && cs.Height > 0 && cs.Width > 0 && cs.Height <= 0xffff && cs.Width <= 0xffff {
		rows, cols = uint16(cs.Height), uint16(cs.Width)
	}
	return process{
		Rows:     rows,
		Cols:     cols,
		Args:     append([]string(nil), p.Args...),
		Env:      append([]string(nil), p.Env...),
		Cwd:      cwd,
		User:     strconv.FormatUint(uint64(p.User.UID), 10) + ":" + strconv.FormatUint(uint64(p.User.GID), 10),
		Terminal: p.Terminal,
		Hostname: s.Hostname,
		Rlimits:  rls,
		NetNS:    netnsFromSpec(s),
	}, nil
}

// netnsFromSpec is the path of the spec's network namespace, or "".
func netnsFromSpec(s *specs.Spec) string {
	if s.Linux == nil {
		return ""
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// Pod-level resources containerd's CRI writes on a pod's sandbox container
// (1.6.20 and 2.4.2 do): the sums of its containers' limits, from the
// kubelet's pod resources.
const (
	annotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
	annotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
)

// guestReserveMiB is added to a memory limit to size the guest: its own
// kernel and agent take ~46 MiB (docs/kubernetes.md), which a RuntimeClass
// counts in overhead.podFixed, so the workload still gets its whole limit.
const guestReserveMiB = 64

// vmSize is the guest a container asks for: memory from its limit (plus
// guestReserveMiB), vCPUs from its CFS quota over period, rounded up and
// clamped to what msb boots. For a pod's sandbox container the pod's sums
// (annotations) count, as the VM is the pod's. Zero means msb's default.
func vmSize(s *specs.Spec, rl role) (vcpus, memMiB int) {
	var limit, quota, period int64
	switch rl {
	case rolePodSandbox:
		limit = annotationInt(s, annotationSandboxMemory)
		quota, period = annotationInt(s, annotationSandboxCPUQuota), annotationInt(s, annotationSandboxCPUPeriod)
	case roleAlone:
		if s.Linux != nil && s.Linux.Resources != nil {
			r := s.Linux.Resources
			if r.Memory != nil && r.Memory.Limit != nil {
				limit = *r.Memory.Limit
			}
			if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil {
				quota, period = *r.CPU.Quota, int64(min(*r.CPU.Period, math.MaxInt64))
			}
		}
	default:
		// A pod's container lives within the pod's VM.
		return 0, 0
	}
	if limit > 0 {
		mib := limit/(1<<20) + guestReserveMiB
		if limit%(1<<20) != 0 {
			mib++
		}
		memMiB = int(min(max(mib, machine.MinMemoryMiB), machine.MaxMemoryMiB))
	}
	if quota > 0 && period > 0 {
		n := quota / period
		if quota%period != 0 {
			n++
		}
		vcpus = int(min(max(n, 1), machine.MaxVCPUs))
	}
	return vcpus, memMiB
}

// annotationInt parses a numeric annotation; 0 when absent or not a
// positive number.
func annotationInt(s *specs.Spec, key string) int64 {
	n, err := strconv.ParseInt(s.Annotations[key], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// rlimit is one resource limit of a process.
type rlimit struct {
	Name       string // msb's name: "nofile", "nproc"…
	Soft, Hard uint64
}

// rlimitsFromSpec maps the spec's rlimits ("RLIMIT_NOFILE") onto msb's
// names; a resource msb does not know, or soft above hard, is an error
// (runc refuses both too).
func rlimitsFromSpec(in []specs.POSIXRlimit) ([]rlimit, error) {
	var out []rlimit
	for _, r := range in {
		name, ok := strings.CutPrefix(r.Type, "RLIMIT_")
		name = strings.ToLower(name)
		if !ok || !slices.Contains(msb.RlimitNames, name) {
			return nil, fmt.Errorf("spec process rlimit %q: not a resource msb sets (%s)", r.Type, strings.Join(msb.RlimitNames, ", "))
		}
		if r.Soft > r.Hard {
			return nil, fmt.Errorf("spec process rlimit %s: soft %d above hard %d", r.Type, r.Soft, r.Hard)
		}
		out = append(out, rlimit{Name: name, Soft: r.Soft, Hard: r.Hard})
	}
	return out, nil
}
