// Package usage is the one kind of error that means "the user asked for
// something that cannot work": a bad flag, config file, run spec or data
// set. Commands print it as one line and exit with status 2.
package usage

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
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

// HostPort checks value, given with flag, as a host:port to listen on or to
// dial: a port number from 0 to 65535 (0: any free port, for a listener)
// and a host that is empty (every interface), an IP address or a name. An
// empty value passes when optional. The error names the flag, the value and
// an example.
func HostPort(flag, value string, optional bool, example string) error {
	if value == "" {
		if optional {
			return nil
		}
		return Errorf("%s is empty; give a host:port, e.g. %s %s", flag, flag, example)
	}
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		return Errorf("%s %q is not a host:port (%v); e.g. %s %s", flag, value, err, flag, example)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return Errorf("%s %q: the port %q is not a number from 0 to 65535; e.g. %s %s", flag, value, port, flag, example)
	}
	if strings.ContainsAny(host, " \t/\\@?#") {
		return Errorf("%s %q: %q is not a host name or IP address; e.g. %s %s", flag, value, host, flag, example)
	}
	return nil
}
