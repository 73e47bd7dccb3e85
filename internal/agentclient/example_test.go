package agentclient_test

import (
	"context"
	"fmt"
	"log"

	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/agentproto"
)

func Example() {
	ctx := context.Background()
	c, err := agentclient.Dial(ctx, "/path/to/sandbox/agent.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	res, err := c.Exec(ctx, agentproto.ExecRequest{Cmd: "uname", Args: []string{"-r"}}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("exit %d: %s", res.ExitCode, res.Stdout)
}
