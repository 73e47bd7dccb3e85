package guestkernel

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
)

// BootEnvPath is where agentd looks for per-boot configuration: NUL-separated
// K=V entries that override its environment.
const BootEnvPath = "msb/boot.env"

// WriteInitramfs writes a newc archive with agentd as /init, the directories
// agentd mounts over, /dev/console (the kernel opens it for init's stdio
// before devtmpfs exists), and the extra entries, in order.
func WriteInitramfs(w io.Writer, agentd []byte, extra ...Entry) error {
	c := NewCPIOWriter(w)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "newroot", ".msb", "msb", "etc"} {
		mode := fs.ModeDir | 0o755
		if d == "tmp" {
			mode = fs.ModeDir | fs.ModeSticky | 0o777
		}
		if err := c.Add(Entry{Name: d, Mode: mode}); err != nil {
			return err
		}
	}
	if err := c.Add(Entry{Name: "dev/console", Mode: fs.ModeCharDevice | fs.ModeDevice | 0o600, Major: 5, Minor: 1}); err != nil {
		return err
	}
	if err := c.Add(Entry{Name: "init", Mode: 0o755, Data: agentd}); err != nil {
		return err
	}
	for _, e := range extra {
		if err := c.Add(e); err != nil {
			return err
		}
	}
	return c.Close()
}

// WriteBootEnv writes a standalone newc archive holding /msb/boot.env with the
// given K=V entries. Appended to an initramfs, it is unpacked after (and so
// on top of) the base archive.
func WriteBootEnv(w io.Writer, env []string) error {
	var buf bytes.Buffer
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("boot env: entry %q is not K=V", kv)
		}
		if strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("boot env: entry for %s contains NUL", k)
		}
		buf.WriteString(kv)
		buf.WriteByte(0)
	}
	// 0600: the file may carry secrets; only root in the guest reads it.
	return WriteArchive(w,
		Entry{Name: "msb", Mode: fs.ModeDir | 0o755},
		Entry{Name: BootEnvPath, Mode: 0o600, Data: buf.Bytes()})
}

// ScriptsPath is where agentd finds the sandbox's scripts in the initramfs;
// it installs them into /.msb/scripts, which leads every command's PATH.
const ScriptsPath = "msb/scripts"

// WriteScripts writes a standalone newc archive holding each script as an
// executable /msb/scripts/<name>.
func WriteScripts(w io.Writer, scripts map[string]string) error {
	entries := []Entry{{Name: "msb", Mode: fs.ModeDir | 0o755}, {Name: ScriptsPath, Mode: fs.ModeDir | 0o755}}
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := ValidScriptName(n); err != nil {
			return err
		}
		entries = append(entries, Entry{Name: ScriptsPath + "/" + n, Mode: 0o755, Data: []byte(scripts[n])})
	}
	return WriteArchive(w, entries...)
}

// ValidScriptName checks a script name: a plain file name.
func ValidScriptName(n string) error {
	if n == "" || n == "." || n == ".." || len(n) > 255 || strings.ContainsAny(n, "/\x00") {
		return fmt.Errorf("script name %q: want a plain file name", n)
	}
	return nil
}

// WriteArchive writes a standalone newc archive of entries.
func WriteArchive(w io.Writer, entries ...Entry) error {
	c := NewCPIOWriter(w)
	for _, e := range entries {
		if err := c.Add(e); err != nil {
			return err
		}
	}
	return c.Close()
}
