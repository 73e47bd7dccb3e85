package cli

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/home"
)

func init() { commands = append(commands, newSnapshotCmd) }

func newSnapshotCmd(stdio Stdio) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot",
		Aliases: []string{"snap"},
		Short:   "Save, list, export and import disk snapshots of stopped sandboxes",
		Long: `A snapshot is a copy of a stopped sandbox's disk (its writable layer, a sparse
ext4 image) with a manifest naming the image it sits on. Start new sandboxes
from it with "msb run --snapshot NAME" or "msb create --snapshot NAME"; move it
to another machine with export and import. Snapshots live in
$MSB_HOME/snapshots/NAME/ (manifest.json, upper.ext4).

  msb run --name dev busybox -- sh -c 'echo hi > /data'   make some state
  msb snapshot create base --from dev                      save its disk
  msb run --snapshot base -- cat /data                     boot a copy of it
  msb snapshot export base base.tar.zst                    one file to share
  msb snapshot import base.tar.zst                         ... and back`,
	}
	cmd.AddCommand(newSnapshotCreateCmd(stdio), newSnapshotLsCmd(stdio), newSnapshotInspectCmd(stdio),
		newSnapshotRmCmd(stdio), newSnapshotExportCmd(stdio), newSnapshotImportCmd(stdio))
	return cmd
}

func newSnapshotCreateCmd(stdio Stdio) *cobra.Command {
	var from string
	var labels []string
	var force bool
	cmd := &cobra.Command{
		Use:   "create NAME --from SANDBOX",
		Short: "Save a stopped sandbox's disk as snapshot NAME",
		Long: `Copy the disk of the stopped sandbox SANDBOX into the snapshot NAME and print
the snapshot's id. The copy keeps the disk sparse: a 4 GiB layer holding 30 MiB
costs 30 MiB. A running sandbox is refused (stop it first: a running guest's
disk is not consistent), and so is a sandbox booted from a root directory
rather than an image.

Examples:
  msb stop dev && msb snapshot create dev-base --from dev
  msb snapshot create nightly --from ci --label branch=main -f`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				return errors.New("--from SANDBOX is required: the stopped sandbox to snapshot")
			}
			opts := []msb.Option{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want KEY=VALUE", l)
				}
				opts = append(opts, msb.WithSnapshotLabel(k, v))
			}
			if force {
				opts = append(opts, msb.ReplaceSnapshot())
			}
			in, err := msb.CreateSnapshot(cmd.Context(), from, args[0], opts...)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdio.Out, in.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the stopped sandbox whose disk to save")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "label KEY=VALUE, recorded in the manifest (repeatable)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace an existing snapshot of the same name")
	return cmd
}

func newSnapshotLsCmd(stdio Stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List snapshots",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			list, err := msb.Snapshots(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				if list == nil {
					list = []msb.SnapshotInfo{}
				}
				return writeJSON(stdio.Out, list)
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tIMAGE\tFROM\tDISK\tCREATED")
			for _, in := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.Name, shortID(in.ID), in.ImageReference, in.SourceSandbox,
					humanBytes(in.AllocatedBytes), in.CreatedAt.Local().Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func shortID(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	return h[:min(12, len(h))]
}

func newSnapshotInspectCmd(stdio Stdio) *cobra.Command {
	var format string
	var verify bool
	cmd := &cobra.Command{
		Use:   "inspect NAME|ID",
		Short: "Show a snapshot's manifest; --verify re-checks its digests",
		Long: `Show a snapshot: its id, the image it boots on, where it came from, its
labels and its disk. With --verify, re-hash the manifest and the disk and fail
(exit 1) when either no longer matches its recorded digest.

Examples:
  msb snapshot inspect dev-base
  msb snapshot inspect dev-base --verify --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			in, err := msb.InspectSnapshot(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			verified := ""
			if verify {
				if err := msb.VerifySnapshot(cmd.Context(), args[0]); err != nil {
					return err
				}
				verified = "ok"
			}
			if format == "json" {
				return writeJSON(stdio.Out, struct {
					msb.SnapshotInfo
					Verified string `json:",omitempty"`
				}{in, verified})
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
			row("Name", in.Name)
			row("ID", in.ID)
			row("Image", in.ImageReference+" ("+in.ImageDigest+")")
			row("From sandbox", in.SourceSandbox)
			if in.Parent != "" {
				row("Parent", in.Parent)
			}
			row("Created", in.CreatedAt.Local().Format("2006-01-02 15:04:05 MST"))
			for _, k := range slices.Sorted(maps.Keys(in.Labels)) {
				row("Label", k+"="+in.Labels[k])
			}
			row("Disk", fmt.Sprintf("%s used of %s (sparse)", humanBytes(in.AllocatedBytes), humanBytes(in.SizeBytes)))
			row("Integrity", in.UpperDigest)
			row("Path", in.Path)
			if verified != "" {
				row("Verified", "ok (manifest and disk match their digests)")
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	cmd.Flags().BoolVar(&verify, "verify", false, "re-hash the manifest and disk; fail if either changed")
	return cmd
}

func newSnapshotRmCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME|ID...",
		Aliases: []string{"remove"},
		Short:   "Remove snapshots",
		Long: `Remove snapshots and their files. Sandboxes created from a snapshot keep their
own copy of its disk and are not affected.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, ref := range args {
				if err := msb.RemoveSnapshot(cmd.Context(), ref); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(stdio.Out, ref)
			}
			return errors.Join(errs...)
		},
	}
}

func newSnapshotExportCmd(stdio Stdio) *cobra.Command {
	var plain bool
	cmd := &cobra.Command{
		Use:   "export NAME|ID FILE",
		Short: "Write a snapshot to one file (tar, zstd-compressed)",
		Long: `Write the snapshot to FILE ("-" for stdout) as a tar archive, zstd-compressed
unless --plain-tar is given. Only the disk's data is written, never its empty
space, and the disk is re-hashed on the way: a damaged snapshot is not
exported. Import it elsewhere with "msb snapshot import FILE"; that machine
needs the snapshot's image ("msb pull IMAGE").

Examples:
  msb snapshot export dev-base dev-base.tar.zst
  msb snapshot export dev-base - --plain-tar | tar -t`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []msb.Option
			if plain {
				opts = append(opts, msb.PlainTar())
			}
			if args[1] == "-" {
				return msb.ExportSnapshot(cmd.Context(), args[0], stdio.Out, opts...)
			}
			return exportFile(cmd, args[0], args[1], opts)
		},
	}
	cmd.Flags().BoolVar(&plain, "plain-tar", false, "write an uncompressed tar")
	return cmd
}

// exportFile exports to path through a temporary file in the same
// directory, so a failed export leaves no partial archive behind.
func exportFile(cmd *cobra.Command, ref, path string, opts []msb.Option) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := msb.ExportSnapshot(cmd.Context(), ref, f, opts...); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func newSnapshotImportCmd(stdio Stdio) *cobra.Command {
	var name string
	var force bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import a snapshot exported with msb snapshot export",
		Long: `Import a snapshot from FILE (.tar.zst or plain .tar) and print its id. It is
named --name, else after FILE without its .tar/.tar.zst suffix. The file is
checked before anything is kept: only the entries an export writes, sizes
within bounds, the snapshot's image already pulled (else: msb pull IMAGE), and
the disk's bytes matching the manifest's digest.

Examples:
  msb pull busybox && msb snapshot import dev-base.tar.zst
  msb snapshot import /tmp/x.tar --name restored -f`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				name = importName(args[0])
				if err := home.ValidName(name); err != nil {
					return fmt.Errorf("cannot name the snapshot after %s (%w): give --name", filepath.Base(args[0]), err)
				}
			}
			var opts []msb.Option
			if force {
				opts = append(opts, msb.ReplaceSnapshot())
			}
			in, err := msb.ImportSnapshot(cmd.Context(), args[0], name, opts...)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdio.Out, in.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the imported snapshot (default: FILE's base name)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace an existing snapshot of the same name")
	return cmd
}

// importName is the default snapshot name for an archive file.
func importName(path string) string {
	base := filepath.Base(path)
	for _, ext := range []string{".tar.zst", ".tzst", ".tar"} {
		if s, ok := strings.CutSuffix(base, ext); ok {
			return s
		}
	}
	return base
}
