package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

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
	var name string
	cmd := &cobra.Command{
		Use:   "install [--name NAME] IMAGE [-- ARG...]",
		Short: "Install a command that runs IMAGE in a fresh sandbox",
		Long: `Write a small script NAME into ~/.local/bin (or $MSB_BIN_DIR) that runs
` + "`msb run IMAGE -- ARG... \"$@\"`" + `: each call gets a new sandbox, removed afterwards.
NAME defaults to the image's last path component without tag or digest
(python for docker.io/library/python:3.12).

An existing file that msb install did not write is never replaced.

Examples:
  msb install python:3.12                         # python -c 'print(1)'
  msb install --name jq ghcr.io/jqlang/jq -- jq   # jq . < file.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			dir, err := binDir()
			if err != nil {
				return err
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
			tmp := path + ".msb-tmp"
			if err := os.WriteFile(tmp, []byte(aliasScript(msbPath, img, fixed)), 0o755); err != nil {
				return fmt.Errorf("install %s: %w", name, err)
			}
			if err := os.Rename(tmp, path); err != nil {
				os.Remove(tmp)
				return fmt.Errorf("install %s: %w", name, err)
			}
			fmt.Fprintf(stdio.Out, "Installed %s → msb run %s\n", path, img)
			if !onPath(dir) {
				fmt.Fprintf(stdio.Err, "note: %s is not on your PATH\n", dir)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the command (default: from the image)")
	return cmd
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

// aliasScript is the POSIX sh script that runs img with fixed arguments and
// then the caller's.
func aliasScript(msbPath, img string, fixed []string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n" + aliasMarker + "\n")
	fmt.Fprintf(&b, "# image: %s\n", strings.ReplaceAll(img, "\n", " "))
	run := "exec " + shellQuote(msbPath) + " run " + shellQuote(img)
	if len(fixed) == 0 {
		// No command of its own: the image's entrypoint, unless the
		// caller gives one.
		fmt.Fprintf(&b, "if [ $# -eq 0 ]; then %s; fi\n", run)
	}
	b.WriteString(run + " --")
	for _, a := range fixed {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString(" \"$@\"\n")
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
