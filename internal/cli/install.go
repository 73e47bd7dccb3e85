package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newInstallCmd, newUninstallCmd) }

// aliasMarker is the second line of every alias script msb install writes;
// msb uninstall removes, and msb install replaces, only files that have it.
const aliasMarker = "# msb-alias: written by `msb install`; remove with `msb uninstall`"

// binDirEnv overrides where alias scripts go (default ~/.local/bin).
const binDirEnv = "MSB_BIN_DIR"

var aliasNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]*$`)

func newInstallCmd(stdio Stdio) *cobra.Command {
	var (
		name, memory, workdir string
		cpus                  int
		tmp, list             bool
		volumes, env          []string
	)
	cmd := &cobra.Command{
		Use:   "install [flags] IMAGE [-- ARG...]",
		Short: "Install a command that runs IMAGE in a sandbox",
		Long: `Write a small script NAME into ~/.local/bin (or $MSB_BIN_DIR) that runs
` + "`msb run IMAGE -- ARG... \"$@\"`" + `. NAME defaults to the image's last path
component without tag or digest (python for docker.io/library/python:3.12).

By default the command runs in a sandbox of its own, also called NAME: the
first call creates it, with the resource flags given here, and later calls
reuse it, so files it writes are still there next time (msb rm NAME starts
afresh). With --tmp each call gets a new sandbox, removed afterwards.

The resource flags (-c, -m, -v, -e, -w) are written into the script, quoted
for the shell; a relative host path in -v is made absolute here.

-l lists the commands msb install wrote. An existing file that msb install
did not write is never replaced.

Examples:
  msb install python:3.12                         # python -c 'print(1)'
  msb install --tmp -m 1G -c 2 python:3.12        # a fresh sandbox per call
  msb install --name jq ghcr.io/jqlang/jq -- jq   # jq . < file.json
  msb install -l`,
		Args: func(cmd *cobra.Command, args []string) error {
			if list && len(args) > 0 {
				return fmt.Errorf("install --list takes no IMAGE, got %q", args)
			} else if list {
				return nil
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := binDir()
			if err != nil {
				return err
			}
			if list {
				for _, n := range []string{"name", "tmp", "cpus", "memory", "volume", "env", "workdir"} {
					if cmd.Flags().Changed(n) {
						return fmt.Errorf("install: --list takes no other flag (got --%s)", n)
					}
				}
				return listAliases(stdio, dir)
			}
			img := args[0]
			fixed := args[1:]
			if dash := cmd.ArgsLenAtDash(); dash > 1 {
				return fmt.Errorf("install takes one IMAGE before --, got %q", args[:dash])
			} else if dash < 0 && len(args) > 1 {
				return fmt.Errorf("put the command's arguments after --: msb install %s -- %s", img, strings.Join(fixed, " "))
			}
			if name == "" {
				name = aliasName(img)
			}
			if !aliasNameRE.MatchString(name) {
				return fmt.Errorf("alias name %q: use letters, digits, '.', '_', '+' and '-' (give one with --name)", name)
			}
			spec := aliasSpec{image: img, fixed: fixed}
			if !tmp {
				spec.sandbox = name
			}
			if cmd.Flags().Changed("cpus") {
				if cpus < 1 {
					return fmt.Errorf("--cpus %d: want at least 1", cpus)
				}
				spec.create = append(spec.create, "--cpus", strconv.Itoa(cpus))
			}
			if memory != "" {
				if _, err := parseMemory(memory); err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
				spec.create = append(spec.create, "--memory", memory)
			}
			for _, v := range volumes {
				v, err := absVolumeSource(v)
				if err != nil {
					return err
				}
				spec.create = append(spec.create, "--volume", v)
			}
			for _, e := range env {
				spec.create = append(spec.create, "--env", e)
			}
			if workdir != "" {
				spec.create = append(spec.create, "--workdir", workdir)
			}
			msbPath, err := os.Executable()
			if err != nil {
				return fmt.Errorf("install: find msb: %w", err)
			}
			path := filepath.Join(dir, name)
			if own, err := isAlias(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("install %s: %w", name, err)
			} else if err == nil && !own {
				return fmt.Errorf("install %s: %s exists and msb did not write it; not replacing it (choose another --name)", name, path)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("install %s: %w", name, err)
			}
			tmpPath := path + ".msb-tmp"
			if err := os.WriteFile(tmpPath, []byte(aliasScript(msbPath, spec)), 0o755); err != nil {
				return fmt.Errorf("install %s: %w", name, err)
			}
			if err := os.Rename(tmpPath, path); err != nil {
				os.Remove(tmpPath)
				return fmt.Errorf("install %s: %w", name, err)
			}
			where := "in sandbox " + name
			if tmp {
				where = "in a new sandbox each call"
			}
			fmt.Fprintf(stdio.Out, "Installed %s → msb run %s (%s)\n", path, img, where)
			if !onPath(dir) {
				fmt.Fprintf(stdio.Err, "note: %s is not on your PATH\n", dir)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&name, "name", "n", "", "name of the command, and of its sandbox (default: from the image)")
	fl.BoolVar(&tmp, "tmp", false, "run each call in a new sandbox, removed afterwards (default: one sandbox NAME, kept between calls)")
	fl.BoolVarP(&list, "list", "l", false, "list the commands msb install wrote")
	fl.IntVarP(&cpus, "cpus", "c", 0, "virtual CPUs of the sandbox (default: msb run's)")
	fl.StringVarP(&memory, "memory", "m", "", "guest memory of the sandbox: 512M, 1G, or MiB (default: msb run's)")
	fl.StringArrayVarP(&volumes, "volume", "v", nil, "mount SRC at DST, as msb run -v (repeatable)")
	fl.StringArrayVarP(&env, "env", "e", nil, "KEY=VALUE in the environment of every command (repeatable)")
	fl.StringVarP(&workdir, "workdir", "w", "", "working directory in the guest")
	return cmd
}

// absVolumeSource makes a -v SRC:DST[:ro] whose SRC is a relative host path
// (./ or ../) absolute, so the alias means the same directory from anywhere.
func absVolumeSource(v string) (string, error) {
	src, rest, ok := strings.Cut(v, ":")
	if !ok {
		return "", fmt.Errorf("--volume %q: want SRC:DST[:ro]", v)
	}
	if src == "." || src == ".." || strings.HasPrefix(src, "./") || strings.HasPrefix(src, "../") {
		abs, err := filepath.Abs(src)
		if err != nil {
			return "", fmt.Errorf("--volume %q: %w", v, err)
		}
		return abs + ":" + rest, nil
	}
	return v, nil
}

// listAliases prints the alias scripts in dir that msb install wrote.
func listAliases(stdio Stdio, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("install --list: %w", err)
	}
	tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIMAGE\tSANDBOX")
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		if own, err := isAlias(path); err != nil || !own {
			continue
		}
		img, sandbox := aliasInfo(path)
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Name(), img, sandbox)
	}
	return tw.Flush()
}

// aliasInfo reads the image and sandbox comments of an alias script; scripts
// from before --tmp have no sandbox line and ran a new sandbox per call.
func aliasInfo(path string) (image, sandbox string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?", "?"
	}
	image, sandbox = "?", tmpSandbox
	for _, line := range strings.SplitN(string(b), "\n", 6) {
		if v, ok := strings.CutPrefix(line, "# image: "); ok {
			image = v
		} else if v, ok := strings.CutPrefix(line, "# sandbox: "); ok {
			sandbox = v
		}
	}
	return image, sandbox
}

func newUninstallCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "uninstall NAME...",
		Short: "Remove commands that msb install wrote",
		Long: `Remove the alias scripts NAME from ~/.local/bin (or $MSB_BIN_DIR). Files that
msb install did not write are left alone, and reported as an error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := binDir()
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				path := filepath.Join(dir, name)
				if !aliasNameRE.MatchString(name) {
					errs = append(errs, fmt.Errorf("uninstall %q: not an alias name", name))
					continue
				}
				own, err := isAlias(path)
				switch {
				case errors.Is(err, fs.ErrNotExist):
					errs = append(errs, fmt.Errorf("uninstall %s: no such alias in %s", name, dir))
				case err != nil:
					errs = append(errs, fmt.Errorf("uninstall %s: %w", name, err))
				case !own:
					errs = append(errs, fmt.Errorf("uninstall %s: %s was not written by msb install; leaving it", name, path))
				default:
					if err := os.Remove(path); err != nil {
						errs = append(errs, fmt.Errorf("uninstall %s: %w", name, err))
						continue
					}
					fmt.Fprintf(stdio.Out, "Removed %s\n", path)
				}
			}
			return errors.Join(errs...)
		},
	}
}

// binDir is where alias scripts live: $MSB_BIN_DIR, else ~/.local/bin.
func binDir() (string, error) {
	if d := os.Getenv(binDirEnv); d != "" {
		return filepath.Abs(d)
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("alias directory: %w (set %s)", err, binDirEnv)
	}
	return filepath.Join(h, ".local", "bin"), nil
}

// aliasName derives a command name from an image reference:
// "ghcr.io/org/tool:1.2@sha256:…" → "tool".
func aliasName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	last := ref[strings.LastIndex(ref, "/")+1:]
	last, _, _ = strings.Cut(last, ":")
	return last
}

// isAlias reports whether path is a regular file msb install wrote.
func isAlias(path string) (bool, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := f.Read(head)
	lines := bytes.SplitN(head[:n], []byte("\n"), 3)
	return len(lines) >= 2 && string(lines[1]) == aliasMarker, nil
}

// tmpSandbox is what the sandbox line of an alias script says with --tmp.
const tmpSandbox = "(new each call)"

// aliasSpec is what an alias script runs.
type aliasSpec struct {
	image   string
	fixed   []string // arguments before the caller's
	sandbox string   // the sandbox to create once and reuse; "" for --tmp
	create  []string // msb run flags that shape a new sandbox
}

// aliasScript is the POSIX sh script that runs a.image with a.fixed
// arguments and then the caller's. A named sandbox gets the creation flags
// only on the call that creates it: msb run refuses them for one that
// exists.
func aliasScript(msbPath string, a aliasSpec) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n" + aliasMarker + "\n")
	fmt.Fprintf(&b, "# image: %s\n", strings.ReplaceAll(a.image, "\n", " "))
	sandbox := tmpSandbox
	if a.sandbox != "" {
		sandbox = a.sandbox
	}
	fmt.Fprintf(&b, "# sandbox: %s\n", sandbox)
	fmt.Fprintf(&b, "msb=%s\n", shellQuote(msbPath))
	quote := func(args []string) string {
		var q strings.Builder
		for _, s := range args {
			q.WriteString(" " + shellQuote(s))
		}
		return q.String()
	}
	img := " " + shellQuote(a.image)
	b.WriteString("run() {\n")
	if a.sandbox == "" {
		fmt.Fprintf(&b, "\texec \"$msb\" run%s%s \"$@\"\n", quote(a.create), img)
	} else {
		name := quote([]string{"--name", a.sandbox})
		if len(a.create) > 0 {
			fmt.Fprintf(&b, "\tif ! \"$msb\" inspect %s >/dev/null 2>&1; then\n", shellQuote(a.sandbox))
			fmt.Fprintf(&b, "\t\texec \"$msb\" run%s%s%s \"$@\"\n\tfi\n", name, quote(a.create), img)
		}
		fmt.Fprintf(&b, "\texec \"$msb\" run%s%s \"$@\"\n", name, img)
	}
	b.WriteString("}\n")
	if len(a.fixed) == 0 {
		// No command of its own: the image's entrypoint, unless the
		// caller gives one.
		b.WriteString("if [ $# -eq 0 ]; then run; fi\n")
	}
	fmt.Fprintf(&b, "run --%s \"$@\"\n", quote(a.fixed))
	return b.String()
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func onPath(dir string) bool {
	for _, p := range filepath.SplitList(os.Getenv("PATH")) {
		if filepath.Clean(p) == filepath.Clean(dir) {
			return true
		}
	}
	return false
}
