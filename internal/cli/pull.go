package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/image"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

func init() { commands = append(commands, newPullCmd) }

func newPullCmd(stdio Stdio) *cobra.Command {
	var force, quiet bool
	var policy string
	var rf registryFlags
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Download an image into the local cache",
		Long: `Download IMAGE (Docker-style reference: python, python:3.12, ghcr.io/o/r@sha256:…,
localhost:5000/x) for linux/amd64 into the cache. A cached image is not fetched
again unless -f is given; layers already cached are never downloaded twice.

Registry settings also come from the environment: MSB_INSECURE_REGISTRIES,
MSB_REGISTRY_MIRRORS (docker.io=mirror.example,other;ghcr.io=...) and
MSB_REGISTRY_CA_FILES.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := image.ParsePullPolicy(policy)
			if err != nil {
				return err
			}
			if force {
				p = image.PullAlways
			}
			imgs, closeFn, err := openImages(cmd.Context(), &rf, args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			img, err := pullWithProgress(cmd.Context(), imgs, args[0], p, stdio.Err, quiet)
			if err != nil {
				return err
			}
			if !quiet {
				fmt.Fprintf(stdio.Out, "%s@%s\n", img.Ref, img.ManifestDigest)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "ask the registry even if the image is cached (pull policy always)")
	cmd.Flags().StringVar(&policy, "pull", "if-missing", "pull policy: if-missing, always or never")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing but errors")
	rf.register(cmd)
	return cmd
}

// pullWithProgress pulls ref, showing progress on w: bars on a terminal,
// one line per event otherwise, nothing when quiet.
func pullWithProgress(ctx context.Context, imgs *image.Store, ref string, policy image.PullPolicy, w io.Writer, quiet bool) (*image.Image, error) {
	r := newProgressRenderer(ctx, w, quiet)
	img, err := imgs.Pull(ctx, ref, policy, r.event)
	r.finish(err == nil)
	return img, err
}

// progressRenderer shows image events. It is created per operation and must
// be finished.
type progressRenderer struct {
	w     io.Writer
	quiet bool

	mu   sync.Mutex
	p    *mpb.Progress // nil when not on a terminal
	bars map[string]*mpb.Bar
	// pct is the last quarter printed per layer in line mode.
	pct map[string]int64
}

func newProgressRenderer(ctx context.Context, w io.Writer, quiet bool) *progressRenderer {
	r := &progressRenderer{w: w, quiet: quiet, bars: map[string]*mpb.Bar{}, pct: map[string]int64{}}
	if f, ok := w.(*os.File); ok && !quiet && term.IsTerminal(int(f.Fd())) {
		// WithAutoRefresh: mpb draws nothing on a writer it does not take
		// for a terminal otherwise (dependencies.md trap 6).
		r.p = mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh())
	}
	return r
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[7:19]
	}
	return d
}

func (r *progressRenderer) event(e image.Event) {
	if r.quiet {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil {
		r.line(e)
		return
	}
	switch e.Kind {
	case image.EventResolving:
		fmt.Fprintf(r.p, "Resolving %s\n", e.Message)
	case image.EventResolved:
		fmt.Fprintf(r.p, "Resolved %s\n", e.Message)
	case image.EventLayerDownloadStart:
		r.bars[e.Layer] = r.p.AddBar(e.Total,
			mpb.PrependDecorators(decor.Name(shortDigest(e.Layer), decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace)))
	case image.EventLayerDownloadProgress:
		if b := r.bars[e.Layer]; b != nil {
			b.SetCurrent(e.Current)
		}
	case image.EventLayerDownloadDone:
		if b := r.bars[e.Layer]; b != nil {
			b.SetCurrent(e.Total)
			b.SetTotal(e.Total, true)
		}
	}
}

// line prints one line per event; download progress only at each quarter.
func (r *progressRenderer) line(e image.Event) {
	switch e.Kind {
	case image.EventResolving:
		fmt.Fprintf(r.w, "Resolving %s\n", e.Message)
	case image.EventResolved:
		fmt.Fprintf(r.w, "Resolved %s\n", e.Message)
	case image.EventLayerDownloadStart:
		fmt.Fprintf(r.w, "%s: downloading %s\n", shortDigest(e.Layer), humanBytes(e.Total))
	case image.EventLayerDownloadProgress:
		if e.Total > 0 {
			q := e.Current * 4 / e.Total
			if q > r.pct[e.Layer] && q < 4 {
				r.pct[e.Layer] = q
				fmt.Fprintf(r.w, "%s: %d%%\n", shortDigest(e.Layer), q*25)
			}
		}
	case image.EventLayerDownloadDone:
		if e.Message == "cached" {
			fmt.Fprintf(r.w, "%s: already cached\n", shortDigest(e.Layer))
		} else {
			fmt.Fprintf(r.w, "%s: downloaded\n", shortDigest(e.Layer))
		}
	case image.EventLayerMaterialize:
		fmt.Fprintf(r.w, "%s: verified\n", shortDigest(e.Layer))
	case image.EventComplete:
		fmt.Fprintf(r.w, "Ready %s\n", e.Message)
	}
}

// finish completes or aborts the bars and waits for mpb to draw them.
func (r *progressRenderer) finish(ok bool) {
	r.mu.Lock()
	p := r.p
	for _, b := range r.bars {
		if !b.Completed() {
			b.Abort(!ok)
		}
	}
	r.mu.Unlock()
	if p != nil {
		p.Wait()
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pullProgressOption shows image pull progress for sandbox creation the way
// `msb pull` does.
func pullProgressOption(ctx context.Context, stdio Stdio, quiet bool) []msb.Option {
	if quiet {
		return nil
	}
	r := newProgressRenderer(ctx, stdio.Err, false)
	return []msb.Option{msb.WithPullProgress(func(e msb.PullEvent) {
		r.event(image.Event{Kind: e.Kind, Layer: e.Layer, Current: e.Current, Total: e.Total, Message: e.Message})
		if e.Kind == "Complete" {
			r.finish(true)
		}
	})}
}
