package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/volume"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newVolumeCmd) }

func newVolumeCmd(stdio Stdio) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "volume",
		Aliases: []string{"vol"},
		Short:   "Manage named volumes",
		Long: `Create, list, inspect and remove named volumes: directories in
$MSB_HOME/volumes/NAME/data that sandboxes mount with -v NAME:/guest/path.
A volume outlives the sandboxes that use it; "msb run -v NAME:..." creates a
missing one.`,
	}
	cmd.AddCommand(newVolumeCreateCmd(stdio), newVolumeLsCmd(stdio), newVolumeInspectCmd(stdio), newVolumeRmCmd(stdio))
	return cmd
}

func newVolumeCreateCmd(stdio Stdio) *cobra.Command {
	var size string
	var labels []string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a named volume",
		Long: `Create the named volume NAME. Creating one that exists succeeds when it asks
for the same (or no) size and labels.

--size sets a quota: a guest's writes through the volume that would make its
files larger fail with "No space left on device", and df in the guest shows
the quota as the size. Changes made on the host are not counted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var quota int64
			if size != "" {
				mib, err := parseMemory(size)
				if err != nil {
					return fmt.Errorf("--size %q: want a size like 512M or 10G", size)
				}
				quota = int64(mib) << 20
			}
			lm := map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want KEY=VALUE", l)
				}
				lm[k] = v
			}
			h, err := home.Resolve()
			if err != nil {
				return err
			}
			if _, err := volume.Create(h, args[0], quota, lm); err != nil {
				return err
			}
			fmt.Fprintln(stdio.Out, args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&size, "size", "", "quota, like 512M or 10G: writes through the volume beyond it fail with ENOSPC")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "label KEY=VALUE (repeatable)")
	return cmd
}

// volumeInfo is a volume as ls and inspect print it.
type volumeInfo struct {
	Name       string            `json:"name"`
	Path       string            `json:"path"`
	CreatedAt  time.Time         `json:"created_at"`
	QuotaBytes int64             `json:"quota_bytes,omitempty"`
	UsedBytes  int64             `json:"used_bytes"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Sandboxes are the sandboxes whose config mounts the volume.
	Sandboxes []string `json:"sandboxes"`
}

// volumeUsers maps each volume name to the sandboxes that mount it.
func volumeUsers(ctx context.Context) (map[string][]string, error) {
	list, err := msb.List(ctx)
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, in := range list {
		for _, m := range in.Mounts {
			if m.Volume != "" && !slices.Contains(users[m.Volume], in.Name) {
				users[m.Volume] = append(users[m.Volume], in.Name)
			}
		}
	}
	return users, nil
}

func describeVolume(h home.Home, v volume.Volume, users map[string][]string) volumeInfo {
	used, _ := volume.Usage(volume.DataDir(h, v.Name))
	in := volumeInfo{Name: v.Name, Path: volume.DataDir(h, v.Name), CreatedAt: v.CreatedAt,
		QuotaBytes: v.QuotaBytes, UsedBytes: used, Labels: v.Labels, Sandboxes: users[v.Name]}
	if in.Sandboxes == nil {
		in.Sandboxes = []string{}
	}
	return in
}

func newVolumeLsCmd(stdio Stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List named volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			h, err := home.Resolve()
			if err != nil {
				return err
			}
			vols, err := volume.List(h)
			if err != nil {
				return err
			}
			users, err := volumeUsers(cmd.Context())
			if err != nil {
				return err
			}
			infos := make([]volumeInfo, 0, len(vols))
			for _, v := range vols {
				infos = append(infos, describeVolume(h, v, users))
			}
			if format == "json" {
				return writeJSON(stdio.Out, infos)
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tUSED\tQUOTA\tSANDBOXES\tCREATED")
			for _, in := range infos {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Name, humanBytes(in.UsedBytes), quotaText(in.QuotaBytes),
					dashIfEmpty(strings.Join(in.Sandboxes, ",")), ago(in.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func newVolumeInspectCmd(stdio Stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a volume's path, usage, quota, labels and the sandboxes that use it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			h, err := home.Resolve()
			if err != nil {
				return err
			}
			v, err := volume.Get(h, args[0])
			if err != nil {
				return volumeError(stdio, err)
			}
			users, err := volumeUsers(cmd.Context())
			if err != nil {
				return err
			}
			in := describeVolume(h, v, users)
			if format == "json" {
				return writeJSON(stdio.Out, in)
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "Name:\t%s\n", in.Name)
			fmt.Fprintf(tw, "Path:\t%s\n", in.Path)
			fmt.Fprintf(tw, "Created:\t%s\n", in.CreatedAt.Local().Format(time.RFC3339))
			fmt.Fprintf(tw, "Used:\t%s\n", humanBytes(in.UsedBytes))
			fmt.Fprintf(tw, "Quota:\t%s\n", quotaText(in.QuotaBytes))
			keys := make([]string, 0, len(in.Labels))
			for k := range in.Labels {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for i, k := range keys {
				key := ""
				if i == 0 {
					key = "Labels:"
				}
				fmt.Fprintf(tw, "%s\t%s=%s\n", key, k, in.Labels[k])
			}
			fmt.Fprintf(tw, "Sandboxes:\t%s\n", dashIfEmpty(strings.Join(in.Sandboxes, ", ")))
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

func newVolumeRmCmd(stdio Stdio) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [-f] NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove named volumes and their data",
		Long: `Remove each volume and everything in it. A volume that a sandbox (running or
stopped) mounts is refused unless -f; remove the sandbox first.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := home.Resolve()
			if err != nil {
				return err
			}
			users, err := volumeUsers(cmd.Context())
			if err != nil {
				return err
			}
			var failed error
			for _, name := range args {
				if err := volume.Remove(h, name, users[name], force); err != nil {
					failed = volumeError(stdio, err)
					continue
				}
				fmt.Fprintln(stdio.Out, name)
			}
			return failed
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove even if sandboxes mount it (they fail to boot until it exists again)")
	return cmd
}

// volumeError renders err with a hint for the volume errors users can fix.
func volumeError(stdio Stdio, err error) error {
	fmt.Fprintf(stdio.Err, "error: %v\n", err)
	switch {
	case errors.Is(err, volume.ErrNotFound):
		fmt.Fprintln(stdio.Err, "  → hint: `msb volume ls` lists the volumes that exist")
	case errors.Is(err, volume.ErrInUse):
		fmt.Fprintln(stdio.Err, "  → hint: remove the sandbox first (`msb rm NAME`), or remove anyway with -f")
	}
	return &exitError{code: 1}
}

func quotaText(b int64) string {
	if b == 0 {
		return "-"
	}
	return humanBytes(b)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
