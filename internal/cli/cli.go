// Package cli is the command-line plumbing both Evident binaries share: a
// flag set per subcommand with its help text, strict argument parsing, and
// one exit-code policy (0 success or -h, 2 usage error, 1 failure).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
)

// ErrUsage marks a usage error already explained on stderr: exit 2.
var ErrUsage = errors.New("usage")

// NewFlagSet returns a flag set whose -h prints help and the flags.
func NewFlagSet(name string, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nFlags:\n", help)
		PrintDefaults(fs)
	}
	return fs
}

// LogHandler is the log handler of both binaries: slog's text format, or
// with format "json" one JSON object a line (what a SIEM ingests).
func LogHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// PrintDefaults prints fs's flags as flag.PrintDefaults does, except that a
// back-quoted word in a usage stays in the text: the flag package would
// take it for the value's placeholder ("-web-listen evident-server token
// create"). The placeholder is the value's type ("string", "duration").
func PrintDefaults(fs *flag.FlagSet) {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		plain := *f
		plain.Usage = strings.ReplaceAll(f.Usage, "`", "")
		name, _ := flag.UnquoteUsage(&plain)
		fmt.Fprintf(&b, "  -%s", f.Name)
		if name != "" {
			b.WriteString(" " + name)
		}
		if b.Len() <= 4 { // a one-letter flag without a value fits before the tab
			b.WriteString("\t")
		} else {
			b.WriteString("\n    \t")
		}
		b.WriteString(strings.ReplaceAll(f.Usage, "\n", "\n    \t"))
		if !isZeroValue(f) {
			if _, ok := f.Value.(interface{ Get() any }); ok && name == "string" {
				fmt.Fprintf(&b, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(&b, " (default %v)", f.DefValue)
			}
		}
		b.WriteString("\n")
		fmt.Fprint(fs.Output(), b.String())
		b.Reset()
	})
}

// isZeroValue reports whether f's default is its type's zero value, which
// flag.PrintDefaults leaves unsaid.
func isZeroValue(f *flag.Flag) bool {
	t := reflect.TypeOf(f.Value)
	var z reflect.Value
	if t.Kind() == reflect.Pointer {
		z = reflect.New(t.Elem())
	} else {
		z = reflect.Zero(t)
	}
	v, ok := z.Interface().(flag.Value)
	if !ok {
		return f.DefValue == ""
	}
	defer func() { recover() }() // a Value whose String needs fields set
	return f.DefValue == v.String()
}

// Parse parses args, refusing positional arguments.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return ErrUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return ErrUsage
	}
	return nil
}

// ParseOne parses flags with at most one positional argument, before or
// after them (`verify BUNDLE --pubkey K` and `verify --pubkey K BUNDLE`).
// It returns "" when there is none and ErrUsage when there are more.
func ParseOne(fs *flag.FlagSet, args []string) (string, error) {
	var arg string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		arg, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", ErrUsage
	}
	if arg == "" && fs.NArg() > 0 {
		return fs.Arg(0), Parse(fs, fs.Args()[1:])
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return "", ErrUsage
	}
	return arg, nil
}

// codedError carries a specific exit code.
type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

// WithCode makes err exit the process with code (e.g. 78, EX_CONFIG, which
// service units list in RestartPreventExitStatus). A nil err stays nil.
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return codedError{code: code, err: err}
}

// ExitCode turns a command's error into the process exit code, printing
// failures as "prog: error".
func ExitCode(prog string, err error, stderr io.Writer) int {
	var coded codedError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	case errors.As(err, &coded):
		fmt.Fprintln(stderr, prog+":", err)
		return coded.code
	default:
		fmt.Fprintln(stderr, prog+":", err)
		return 1
	}
}
