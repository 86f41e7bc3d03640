package config

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/caarlos0/env/v11"
)

// Var is one environment variable a configuration reads.
type Var struct {
	Name       string
	Default    string
	HasDefault bool
}

// Vars lists, in declaration order, every environment variable that the
// configuration T reads, with its default: the one list from which
// docs/CONFIGURATION.md is generated (lab/configdoc), and against which
// docker-compose.yml and the Kubernetes manifests are checked (each binary
// prints it with -env).
func Vars[T any]() []Var {
	var zero T
	params, err := env.GetFieldParams(&zero)
	if err != nil {
		panic(fmt.Sprintf("config: %T: %v", zero, err)) // a bad tag: every test meets it at once
	}
	vars := make([]Var, len(params))
	for i, p := range params {
		vars[i] = Var{Name: p.Key, Default: p.DefaultValue, HasDefault: p.HasDefaultValue}
	}
	return vars
}

// Flags parses a binary's command line: it takes no flag but -env, which
// prints the variables that T reads, NAME=default one a line, and exits.
func Flags[T any](name string) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s is configured by environment variables only (docs/CONFIGURATION.md).\n\n", name)
		fs.PrintDefaults()
	}
	printEnv := fs.Bool("env", false, "print every environment variable read, NAME=default one a line, and exit")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	if *printEnv {
		writeVars(os.Stdout, Vars[T]())
		os.Exit(0)
	}
}

func writeVars(w io.Writer, vars []Var) {
	for _, v := range vars {
		fmt.Fprintf(w, "%s=%s\n", v.Name, v.Default)
	}
}
