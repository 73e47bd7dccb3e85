package msb_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/msb-go/msb"
)

// Saving a sandbox's disk as a snapshot, booting a copy of it, and moving
// it to another machine as one file. Snapshots need a sandbox booted from
// an image (here dev, made with msb.WithImage).
func ExampleSandbox_Snapshot() {
	ctx := context.Background()
	sb, err := msb.Get(ctx, "dev")
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	if _, err := sb.Shell(ctx, "echo configured > /etc/motd && sync"); err != nil {
		log.Fatal(err)
	}
	// A snapshot needs a stopped sandbox: a running guest's disk is not
	// consistent.
	if err := sb.Stop(ctx, 10*time.Second); err != nil {
		log.Fatal(err)
	}
	snap, err := sb.Snapshot(ctx, "dev-configured", msb.WithSnapshotLabel("team", "ml"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(snap.Name, "of", snap.ImageReference, "labels", snap.Labels)

	// A new sandbox on a copy of that disk, on the snapshot's image.
	copy, err := msb.Create(ctx, "", msb.FromSnapshot("dev-configured"))
	if err != nil {
		log.Fatal(err)
	}
	defer msb.Remove(ctx, copy.Name(), true)
	defer copy.Close()
	res, err := copy.Exec(ctx, "cat", []string{"/etc/motd"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("the copy says %s", res.Stdout)

	// One file for another machine; there: msb.ImportSnapshot(ctx,
	// "dev-configured.tar.zst", "dev-configured") after pulling the image.
	f, err := os.Create("dev-configured.tar.zst")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := msb.ExportSnapshot(ctx, "dev-configured", f); err != nil {
		log.Fatal(err)
	}
	fmt.Println("exported")
}
