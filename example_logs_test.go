package msb_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/msb-go/msb"
)

// The last hour of a sandbox's errors, then new ones as they are written
// (across log rotations) until the context ends, here after three seconds.
func ExampleSandbox_Logs() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	sb, err := msb.Get(ctx, "dev")
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	for e, err := range sb.Logs(ctx,
		msb.WithLogSince(time.Now().Add(-time.Hour)),
		msb.WithLogGrep(`(?i)error|panic`),
		msb.WithLogSources("stdout", "stderr"),
		msb.WithFollow(0)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s [%s] %s", e.Time.Format(time.RFC3339), e.Source, e.Text)
	}
}

// CPU and memory once a second, for three samples.
func ExampleSandbox_MetricsStream() {
	ctx := context.Background()
	sb, err := msb.Get(ctx, "dev")
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	n := 0
	for m, err := range sb.MetricsStream(ctx, time.Second) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("cpu %.1f%% mem %d MiB\n", m.CPUPercent, m.MemoryBytes>>20)
		if n++; n == 3 {
			break
		}
	}
}

// Listing, inspecting and removing cached images, then freeing their blobs.
func ExampleImages() {
	ctx := context.Background()
	imgs := msb.Images()
	list, err := imgs.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, img := range list {
		fmt.Println(img.Reference, img.Platform, img.SizeBytes)
	}
	img, err := imgs.Inspect(ctx, "alpine:3.20")
	if errors.Is(err, msb.ErrImageNotFound) {
		fmt.Println("not cached")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.ManifestDigest, img.Config.Cmd)
	if err := imgs.Remove(ctx, "alpine:3.20", false); errors.Is(err, msb.ErrImageInUse) {
		fmt.Println("a sandbox uses it")
	}
	freed, err := imgs.Prune(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("freed %d bytes\n", freed)
}
