package nested

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ErrLibraryNotFound is returned by HostBinary when ldd cannot resolve one of
// the executable's shared libraries on the host.
var ErrLibraryNotFound = errors.New("shared library not found")

// HostBinary returns the files that make the host executable exe run inside
// L1, whose initramfs has no libc: exe itself, its ELF interpreter, every
// shared library `ldd exe` resolves, and the data files or directories
// (walked recursively) the program opens at run time. Each file keeps its
// host path inside L1, which is where the interpreter and the program look;
// symbolic links are resolved and stored as regular files. A statically
// linked exe yields only itself plus data.
//
// L1 has no /etc/ld.so.cache; glibc's loader then searches its built-in
// directories, which on Debian include the multiarch /lib/x86_64-linux-gnu
// that ldd reports, so no LD_LIBRARY_PATH is needed.
func HostBinary(exe string, data ...string) ([]File, error) {
	exe, err := filepath.Abs(exe)
	if err != nil {
		return nil, fmt.Errorf("host binary: %w", err)
	}
	interp, err := interpreter(exe)
	if err != nil {
		return nil, fmt.Errorf("host binary %s: %w", exe, err)
	}
	paths := []string{exe}
	if interp != "" {
		paths = append(paths, interp)
		var stderr bytes.Buffer
		cmd := exec.Command("ldd", exe)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("host binary %s: ldd: %w: %s", exe, err, strings.TrimSpace(stderr.String()))
		}
		libs, err := parseLDD(out)
		if err != nil {
			return nil, fmt.Errorf("host binary %s: %w", exe, err)
		}
		paths = append(paths, libs...)
	}
	for _, d := range data {
		found, err := walkFiles(d)
		if err != nil {
			return nil, fmt.Errorf("host binary %s: data: %w", exe, err)
		}
		paths = append(paths, found...)
	}
	var files []File
	seen := map[string]bool{}
	for _, p := range paths {
		p = filepath.Clean(p)
		if seen[p] {
			continue
		}
		seen[p] = true
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, fmt.Errorf("host binary %s: %w", exe, err)
		}
		st, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("host binary %s: %w", exe, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("host binary %s: %s is not a regular file", exe, p)
		}
		files = append(files, File{Path: p, HostPath: real, Mode: st.Mode().Perm()})
	}
	return files, nil
}

// interpreter returns the PT_INTERP path of the ELF executable exe, or ""
// when it is statically linked.
func interpreter(exe string) (string, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		// The segment is a NUL-terminated path; bound it (PATH_MAX) so a
		// corrupt header cannot make us allocate much.
		if prog.Filesz == 0 || prog.Filesz > 4096 {
			return "", fmt.Errorf("PT_INTERP of %d bytes", prog.Filesz)
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("read PT_INTERP: %w", err)
		}
		p := string(bytes.TrimRight(b, "\x00"))
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("PT_INTERP %q is not an absolute path", p)
		}
		return p, nil
	}
	return "", nil
}

// parseLDD returns the absolute library paths in ldd's output, in order. The
// line forms are "name => /path (0xADDR)", "/path (0xADDR)" (the
// interpreter), "name (0xADDR)" (the vDSO, which has no file) and
// "name => not found", which is an error.
func parseLDD(out []byte) ([]string, error) {
	var libs, missing []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		name, target, arrow := strings.Cut(line, "=>")
		if !arrow {
			target = name
		}
		target = strings.TrimSpace(target)
		if target == "not found" {
			missing = append(missing, strings.TrimSpace(name))
			continue
		}
		if i := strings.LastIndex(target, " (0x"); i >= 0 {
			target = target[:i]
		}
		if strings.HasPrefix(target, "/") {
			libs = append(libs, target)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ldd output: %w", err)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrLibraryNotFound, strings.Join(missing, ", "))
	}
	return libs, nil
}

// walkFiles returns p when it is a file, or the files under p (following
// a symbolic link at p itself) when it is a directory, sorted.
func walkFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	var out []string
	err = filepath.WalkDir(real, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(real, q)
		if err != nil {
			return err
		}
		out = append(out, filepath.Join(p, rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}
