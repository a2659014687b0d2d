// Package usage is the one kind of error that means "the user asked for
// something that cannot work": a bad flag, config file, run spec or data
// set. Commands print it as one line and exit with status 2.
package usage

import (
	"errors"
	"flag"
	"fmt"
)

// Error is bad input from the user. Its message names the field, the value
// and the fix.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Errorf formats a usage error.
func Errorf(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// New is a usage error with msg as it is.
func New(msg string) error { return &Error{Msg: msg} }

// Is reports whether err is, or wraps, a usage error.
func Is(err error) bool {
	var u *Error
	return errors.As(err, &u)
}

// ParseFlags parses args into fs: a bad flag or a positional argument is a
// usage error; --help returns flag.ErrHelp as it is.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return New(err.Error())
	}
	if fs.NArg() > 0 {
		return Errorf("unexpected argument %q; every option is a --flag", fs.Arg(0))
	}
	return nil
}
