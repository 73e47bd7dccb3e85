package confine

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// Seccomp sets no_new_privs and installs p on every thread of the process
// (SECCOMP_FILTER_FLAG_TSYNC). It cannot be undone, and every process
// started afterwards inherits it.
func Seccomp(p Policy) error {
	for _, name := range p.Syscalls {
		switch name {
		case "socket", "ioctl", "clone", "clone3", "kill", "tgkill":
			return fmt.Errorf("seccomp: %s is allowed only through its Policy field, with its arguments filtered", name)
		}
	}
	filter := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionErrno,
			Syscalls: []seccomp.SyscallGroup{{
				Action:             seccomp.ActionAllow,
				Names:              p.Syscalls,
				NamesWithCondtions: p.conditions(),
			}, {
				// clone3 passes its flags behind a pointer, which a filter
				// cannot read: refuse it with ENOSYS, on which glibc's
				// pthread_create (cgo builds) falls back to clone.
				Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS),
				Names:  []string{"clone3"},
			}},
		},
	}
	if err := seccomp.LoadFilter(filter); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return nil
}

func (p Policy) conditions() []seccomp.NameWithConditions {
	var out []seccomp.NameWithConditions
	eq := func(arg uint32, v uint64) seccomp.Condition {
		return seccomp.Condition{Argument: arg, Operation: seccomp.Equal, Value: v}
	}
	for _, fam := range p.SocketFamilies {
		out = append(out, seccomp.NameWithConditions{Name: "socket", Conditions: seccomp.ArgumentConditions{eq(0, uint64(fam))}})
	}
	for _, t := range p.IoctlTypes {
		out = append(out, seccomp.NameWithConditions{Name: "ioctl", Conditions: ioctlType(t)})
	}
	for _, r := range p.IoctlRequests {
		out = append(out, seccomp.NameWithConditions{Name: "ioctl", Conditions: seccomp.ArgumentConditions{eq(1, r)}})
	}
	if p.Threads {
		out = append(out, seccomp.NameWithConditions{Name: "clone", Conditions: seccomp.ArgumentConditions{
			{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_THREAD},
		}})
	}
	for _, pid := range p.KillPIDs {
		out = append(out, seccomp.NameWithConditions{Name: "kill", Conditions: seccomp.ArgumentConditions{eq(0, uint64(pid))}})
	}
	out = append(out, seccomp.NameWithConditions{Name: "tgkill", Conditions: seccomp.ArgumentConditions{eq(0, uint64(unix.Getpid()))}})
	return out
}

// ioctlType matches requests whose _IOC_TYPE byte (bits 8–15) is t: every
// bit of t set and every other bit of that byte clear. The kernel reads the
// request as 32 bits, so higher bits of the register do not matter.
func ioctlType(t uint8) seccomp.ArgumentConditions {
	conds := seccomp.ArgumentConditions{
		{Argument: 1, Operation: seccomp.BitsNotSet, Value: uint64(^t) << 8 & 0xff00},
	}
	for bit := uint(0); bit < 8; bit++ {
		if t&(1<<bit) != 0 {
			conds = append(conds, seccomp.Condition{Argument: 1, Operation: seccomp.BitsSet, Value: 1 << (8 + bit)})
		}
	}
	return conds
}
