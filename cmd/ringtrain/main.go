// Command ringtrain trains neural networks data-parallel across machines:
// workers combine gradients with a ring all-reduce over gRPC, a coordinator
// registered in etcd owns membership, checkpoints and recovery.
//
// One binary, one subcommand per role; `ringtrain --help` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/ringtrain/ringtrain/internal/usage"
	"github.com/ringtrain/ringtrain/nn"
)

// command is one subcommand: parse args, build a config, run.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what a subcommand may touch of the process.
type env struct {
	stdout, stderr io.Writer
	name           string // "ringtrain <sub>"
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, env *env, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

func printCommands(w io.Writer) {
	fmt.Fprintln(w, "ringtrain: distributed data-parallel training with a ring all-reduce over gRPC")
	fmt.Fprintln(w, "\nUsage: ringtrain <command> [flags]   (ringtrain <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
}

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printCommands(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		printCommands(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ringtrain: unknown command %q; run `ringtrain --help` for the list\n", args[0])
		return 2
	}
	for _, err := range []error{nn.BLASKernelError(), nn.FixedKernelError()} {
		if err != nil {
			fmt.Fprintf(stderr, "ringtrain %s: %v\n", args[0], err)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, &env{stdout: stdout, stderr: stderr, name: "ringtrain " + args[0]}, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case usage.Is(err):
		fmt.Fprintf(stderr, "ringtrain %s: %v\n", args[0], err)
		return 2
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintf(stderr, "ringtrain %s: interrupted\n", args[0])
		return 130
	default:
		fmt.Fprintf(stderr, "ringtrain %s: %v\n", args[0], err)
		return 1
	}
}

// newFlagSet is a FlagSet that reports errors instead of exiting.
func (e *env) newFlagSet(summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(e.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: %s [flags]\n\n%s\n\nFlags:\n", e.name, summary)
		fs.PrintDefaults()
	}
	return fs
}
