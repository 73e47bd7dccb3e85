// Command gendocs writes docs/cli.md, the msb command reference, from the
// CLI's command tree: go run ./tools/gendocs > docs/cli.md (make docs).
package main

import (
	"fmt"
	"os"

	"github.com/msb-go/msb/internal/cli"
)

func main() {
	if err := cli.WriteDocs(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}
