package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/volume"
)

// mountFlags are -v, --tmpfs and --disk (reference §11).
type mountFlags struct {
	volumes []string
	tmpfs   []string
	disks   []string
}

// parse turns the flags into mounts: volumes, then tmpfs, then disks, each
// in the order given. Host paths are made absolute; whether they exist, and
// duplicate guest paths, are checked by Create.
func (f *mountFlags) parse() ([]launch.Mount, error) {
	var out []launch.Mount
	for _, s := range f.volumes {
		m, err := parseVolumeSpec(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	for _, s := range f.tmpfs {
		m, err := parseTmpfsSpec(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	for _, s := range f.disks {
		m, err := parseDiskSpec(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// parseVolumeSpec parses -v SRC:DST[:ro|:rw]. SRC is a host directory when
// it starts with /, ./, ../ or ~ (or is . or ..), else a named volume.
func parseVolumeSpec(spec string) (launch.Mount, error) {
	bad := func(why string) (launch.Mount, error) {
		return launch.Mount{}, fmt.Errorf("-v %q: %s", spec, why)
	}
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return bad("want SRC:DST[:ro] (SRC a host directory such as ./src or a volume name)")
	}
	m := launch.Mount{Kind: launch.MountBind, Target: parts[1]}
	if len(parts) == 3 {
		ro, err := accessMode(parts[2])
		if err != nil {
			return bad(err.Error())
		}
		m.ReadOnly = ro
	}
	src := parts[0]
	if isHostPath(src) {
		abs, err := hostPath(src)
		if err != nil {
			return bad(err.Error())
		}
		m.Source = abs
	} else {
		if err := volume.ValidName(src); err != nil {
			return bad(fmt.Sprintf("%v (a host path starts with /, ./, ../ or ~)", err))
		}
		m.Volume = src
	}
	if err := checkMount(m); err != nil {
		return bad(err.Error())
	}
	return m, nil
}

// parseTmpfsSpec parses --tmpfs PATH[:SIZE], SIZE as 64M, 1G or MiB.
func parseTmpfsSpec(spec string) (launch.Mount, error) {
	path, size, sized := strings.Cut(spec, ":")
	m := launch.Mount{Kind: launch.MountTmpfs, Target: path}
	if sized {
		mib, err := parseMemory(size)
		if err != nil {
			return launch.Mount{}, fmt.Errorf("--tmpfs %q: size %q: want a size like 64M or 1G", spec, size)
		}
		m.SizeMiB = mib
	}
	if err := checkMount(m); err != nil {
		return launch.Mount{}, fmt.Errorf("--tmpfs %q: %w", spec, err)
	}
	return m, nil
}

// parseDiskSpec parses --disk FILE:GUEST[:ro|:rw]; the guest detects the
// image's file system.
func parseDiskSpec(spec string) (launch.Mount, error) {
	bad := func(why string) (launch.Mount, error) {
		return launch.Mount{}, fmt.Errorf("--disk %q: %s", spec, why)
	}
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return bad("want FILE:GUEST[:ro] (FILE a raw or ext4 image)")
	}
	m := launch.Mount{Kind: launch.MountDisk, Target: parts[1]}
	if len(parts) == 3 {
		ro, err := accessMode(parts[2])
		if err != nil {
			return bad(err.Error())
		}
		m.ReadOnly = ro
	}
	abs, err := hostPath(parts[0])
	if err != nil {
		return bad(err.Error())
	}
	m.Source = abs
	if err := checkMount(m); err != nil {
		return bad(err.Error())
	}
	return m, nil
}

func accessMode(s string) (readOnly bool, err error) {
	switch s {
	case "ro":
		return true, nil
	case "rw":
		return false, nil
	}
	return false, fmt.Errorf("mode %q: want ro or rw", s)
}

func isHostPath(s string) bool {
	return s == "." || s == ".." ||
		strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") || strings.HasPrefix(s, "~")
}

// hostPath expands a leading ~ (the shell does not after "-v x:" or
// "--volume=") and makes s absolute.
func hostPath(s string) (string, error) {
	if s == "~" || strings.HasPrefix(s, "~/") {
		dir, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		s = dir + s[1:]
	} else if strings.HasPrefix(s, "~") {
		return "", fmt.Errorf("%s: only ~/ is expanded, not ~user", s)
	}
	return filepath.Abs(s)
}

// checkMount applies the guest-path rules at parse time, so the error names
// the flag; a named volume's source is set later, by Create.
func checkMount(m launch.Mount) error {
	if m.Volume != "" {
		m.Source = "/"
	}
	return m.Validate()
}

// mountOption is the SDK option that asks for m.
func mountOption(m launch.Mount) msb.Option {
	switch {
	case m.Kind == launch.MountTmpfs:
		return msb.WithTmpfs(m.Target, m.SizeMiB)
	case m.Kind == launch.MountDisk:
		return msb.WithDisk(m.Source, m.Target, m.ReadOnly)
	case m.Volume != "":
		return msb.WithNamedVolume(m.Volume, m.Target, m.ReadOnly)
	case m.ReadOnly:
		return msb.WithVolumeReadOnly(m.Source, m.Target)
	}
	return msb.WithVolume(m.Source, m.Target)
}
