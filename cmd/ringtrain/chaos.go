package main

import (
	"context"

	"github.com/ringtrain/ringtrain/deploy/chaos"
)

func init() {
	register("chaos", chaos.Summary, func(ctx context.Context, e *env, args []string) error {
		return chaos.Command(ctx, e.name, args, e.stdout, e.stderr)
	})
}
