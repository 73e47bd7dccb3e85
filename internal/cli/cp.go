package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/msb-go/msb"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func init() { commands = append(commands, newCpCmd) }

func newCpCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:     "cp SRC DST",
		Aliases: []string{"copy"},
		Short:   "Copy files and directories between the host and a sandbox",
		Long: `Copy SRC to DST, where exactly one of them is NAME:PATH, a path in the
running sandbox NAME, and the other a host path. Directories are copied
recursively, like cp -a: permission bits and modification times are kept,
symlinks are copied as symlinks, devices and fifos are skipped. Files in the
guest are owned by root; files on the host by you.

If DST is an existing directory, or ends with /, SRC is copied into it under
its own name; otherwise SRC is copied to DST, replacing a file there or
merging into a directory there. A host path containing ':' must start with
/ or ./ to be read as a host path.

Examples:
  msb cp ./src dev:/work           # /work/src, or /work if it does not exist
  msb cp dev:/etc/hosts .          # ./hosts
  msb cp dev:/var/log/app/ ./logs  # the whole directory`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst, err := parseCpArgs(args[0], args[1])
			if err != nil {
				return err
			}
			box := src.box + dst.box
			ctx := cmd.Context()
			sb, err := msb.Get(ctx, box)
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			defer sb.Close()
			in, err := sb.Info(ctx)
			if err != nil {
				return &exitError{code: renderError(stdio.Err, err)}
			}
			if in.PID == 0 {
				fmt.Fprintf(stdio.Err, "error: sandbox %s is not running; start it with `msb start %s`\n", box, box)
				return &exitError{code: 1}
			}
			f := sb.FS()
			start := time.Now()
			var host string
			if src.box != "" {
				host, err = cpToHost(cmd, f, src.path, dst.path)
			} else {
				host, err = cpFromHost(cmd, f, src.path, dst.path)
			}
			if err != nil {
				fmt.Fprintf(stdio.Err, "error: %v\n", err)
				if errors.Is(err, msb.ErrNotRunning) {
					fmt.Fprintf(stdio.Err, "  → hint: start it with `msb start %s`\n", box)
				}
				return &exitError{code: 1}
			}
			if w, ok := stdio.Err.(*os.File); ok && term.IsTerminal(int(w.Fd())) {
				printCpSummary(stdio, host, time.Since(start))
			}
			return nil
		},
	}
}

// cpEnd is one side of a copy: box is empty for the host.
type cpEnd struct {
	box  string
	path string
}

// parseCpEnd reads NAME:PATH as a guest path. A path starting with / or .,
// or whose part before ':' contains '/', is a host path.
func parseCpEnd(arg string) cpEnd {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return cpEnd{path: arg}
	}
	name, p, ok := strings.Cut(arg, ":")
	if !ok || name == "" || strings.Contains(name, "/") {
		return cpEnd{path: arg}
	}
	if p == "" {
		p = "/"
	}
	return cpEnd{box: name, path: p}
}

func parseCpArgs(srcArg, dstArg string) (src, dst cpEnd, err error) {
	src, dst = parseCpEnd(srcArg), parseCpEnd(dstArg)
	switch {
	case src.box != "" && dst.box != "":
		return src, dst, fmt.Errorf("cp: both %q and %q are sandbox paths; copy through the host in two steps", srcArg, dstArg)
	case src.box == "" && dst.box == "":
		return src, dst, fmt.Errorf("cp: neither %q nor %q is a sandbox path; write one as NAME:/path", srcArg, dstArg)
	case src.path == "-" || dst.path == "-":
		return src, dst, errors.New("cp: streaming a tar through - is not supported; use `msb exec NAME -- tar`")
	}
	if src.box != "" {
		src.path = guestAbs(src.path)
	}
	if dst.box != "" {
		dst.path = guestAbs(dst.path)
	}
	return src, dst, nil
}

// guestAbs makes a guest path absolute (from /), keeping a trailing slash.
func guestAbs(p string) string {
	slash := strings.HasSuffix(p, "/") && p != "/"
	p = path.Clean("/" + p)
	if slash {
		p += "/"
	}
	return p
}

// cpToHost copies guest path src to host path dst, returning the host path
// written.
func cpToHost(cmd *cobra.Command, f *msb.FS, src, dst string) (string, error) {
	ctx := cmd.Context()
	name := path.Base(src)
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		dst = filepath.Join(dst, name)
	} else if strings.HasSuffix(dst, "/") {
		return "", fmt.Errorf("%s: no such directory", dst)
	}
	return dst, f.CopyToHost(ctx, strings.TrimSuffix(src, "/"), dst)
}

// cpFromHost copies host path src to guest path dst, returning the host
// path read.
func cpFromHost(cmd *cobra.Command, f *msb.FS, src, dst string) (string, error) {
	ctx := cmd.Context()
	if _, err := os.Lstat(src); err != nil {
		return "", err
	}
	name := filepath.Base(filepath.Clean(src))
	fi, err := f.Stat(ctx, dst)
	switch {
	case err == nil && fi.IsDir:
		dst = path.Join(dst, name)
	case errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(dst, "/"):
		// dir/ that does not exist: create it and copy into it, as the
		// trailing slash asks.
		dst = path.Join(dst, name)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	return src, f.CopyFromHost(ctx, src, strings.TrimSuffix(dst, "/"))
}

// printCpSummary reports the size of the host side of a finished copy.
func printCpSummary(stdio Stdio, host string, took time.Duration) {
	var files, bytes int64
	_ = filepath.WalkDir(host, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				files++
				bytes += fi.Size()
			}
		}
		return nil
	})
	mib := float64(bytes) / (1 << 20)
	fmt.Fprintf(stdio.Err, "copied %d files, %.1f MiB in %s (%.1f MiB/s)\n",
		files, mib, took.Round(time.Millisecond), mib/max(took.Seconds(), 1e-3))
}
