package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/msb-go/msb/internal/image"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newImageCmd, newImagesCmd, newRmiCmd) }

func newImageCmd(stdio Stdio) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage cached OCI images",
		Long: `List, inspect, remove, prune and import the images in the local cache
($MSB_HOME/cache). Everything but pull works offline.`,
	}
	cmd.AddCommand(newPullCmd(stdio), newImageLsCmd(stdio), newImageInspectCmd(stdio), newImageRmCmd(stdio),
		newImagePruneCmd(stdio), newImageImportCmd(stdio))
	return cmd
}

func newImagesCmd(stdio Stdio) *cobra.Command {
	c := newImageLsCmd(stdio)
	c.Use, c.Aliases, c.Hidden = "images", nil, true
	return c
}

func newRmiCmd(stdio Stdio) *cobra.Command {
	c := newImageRmCmd(stdio)
	c.Use, c.Aliases, c.Hidden = "rmi IMAGE...", nil, true
	return c
}

func newImageLsCmd(stdio Stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List cached images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			imgs, closeFn, err := openImages(cmd.Context(), nil, "")
			if err != nil {
				return err
			}
			defer closeFn()
			list, err := imgs.List(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				if list == nil {
					list = []image.Image{}
				}
				return writeJSON(stdio.Out, list)
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REFERENCE\tDIGEST\tPLATFORM\tLAYERS\tSIZE")
			for _, img := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", img.Ref, shortDigest(img.ManifestDigest), img.Platform,
					len(img.Layers), humanBytes(img.SizeBytes))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func newImageInspectCmd(stdio Stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show a cached image's manifest digest, layers and config as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "json"); err != nil {
				return err
			}
			imgs, closeFn, err := openImages(cmd.Context(), nil, "")
			if err != nil {
				return err
			}
			defer closeFn()
			img, err := imgs.Inspect(cmd.Context(), args[0])
			if err != nil {
				return imageError(stdio, err)
			}
			return writeJSON(stdio.Out, img)
		},
	}
	cmd.Flags().StringVar(&format, "format", "json", "output format: json (the only one; accepted for symmetry with the other commands)")
	return cmd
}

func newImageRmCmd(stdio Stdio) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm IMAGE...",
		Aliases: []string{"remove"},
		Short:   "Remove cached images",
		Long: `Remove image references. An image a sandbox uses is refused unless -f, which
removes only the reference: the sandbox keeps its image until it is removed.
Blobs are freed by ` + "`msb image prune`" + `.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, closeFn, err := openImages(cmd.Context(), nil, "")
			if err != nil {
				return err
			}
			defer closeFn()
			var failed error
			for _, ref := range args {
				if err := imgs.Remove(cmd.Context(), ref, force); err != nil {
					failed = imageError(stdio, err)
					continue
				}
				fmt.Fprintf(stdio.Out, "Removed %s\n", ref)
			}
			return failed
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "untag even if a sandbox uses the image")
	return cmd
}

func newImagePruneCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Delete cached data no image reference or sandbox needs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, closeFn, err := openImages(cmd.Context(), nil, "")
			if err != nil {
				return err
			}
			defer closeFn()
			freed, err := imgs.Prune(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdio.Out, "Freed %s\n", humanBytes(freed))
			return nil
		},
	}
}

func newImageImportCmd(stdio Stdio) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "import PATH [IMAGE]",
		Short: "Add an image from a docker save archive, an OCI layout or a directory",
		Long: `Add an image to the cache without any network access. PATH is one of
  - a ` + "`docker save`" + ` archive, plain or gzipped (IMAGE picks one of several),
  - an OCI image layout directory (oci-layout, index.json, blobs/),
  - a plain directory, packed as the root file system of a one-layer image
    (IMAGE is required to name it).

  docker save python:3.12 -o py.tar && msb image import py.tar
  msb image import ./rootfs localhost/mytools:1`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			imgs, closeFn, err := openImages(cmd.Context(), nil, "")
			if err != nil {
				return err
			}
			defer closeFn()
			r := newProgressRenderer(cmd.Context(), stdio.Err, quiet)
			img, err := imgs.Import(cmd.Context(), args[0], ref, r.event)
			r.finish(err == nil)
			if err != nil {
				return err
			}
			if !quiet {
				fmt.Fprintf(stdio.Out, "%s@%s\n", img.Ref, img.ManifestDigest)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing but errors")
	return cmd
}

// imageError renders err with a hint for the image errors users can fix.
func imageError(stdio Stdio, err error) error {
	fmt.Fprintf(stdio.Err, "error: %v\n", err)
	switch {
	case errors.Is(err, image.ErrNotFound):
		fmt.Fprintln(stdio.Err, "  → hint: `msb image ls` lists cached images; `msb pull IMAGE` fetches one")
	case errors.Is(err, image.ErrInUse):
		fmt.Fprintln(stdio.Err, "  → hint: remove the sandbox first (`msb rm NAME`), or untag anyway with -f")
	}
	return &exitError{code: 1}
}
