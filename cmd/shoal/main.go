// Command shoal deploys, balances and scales an app on plain Linux servers.
// See the README for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/shoal-dev/shoal/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
