package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/server/admin"
)

const asHelp = "who is doing this, for the audit log: the entry's actor is then cli:NAME (os user USER@HOST)\ninstead of cli:USER@HOST"

// asFlag adds --as to an admin command's flags.
func asFlag(fs *flag.FlagSet) *string { return fs.String("as", "", asHelp) }

// cliActor is the audit log's actor of this process's admin commands (see
// admin.CLIActor): the OS user and host, and the --as name when given. A
// bad --as is a usage error.
func cliActor(as string, stderr io.Writer) (string, error) {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	actor, err := admin.CLIActor(as, name, host)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return "", cli.ErrUsage
	}
	return actor, nil
}

// adminService is the admin service over a store with the CLI's clock. The
// CLI does not know the running server's control pack, so any control id
// is accepted (waiver add warns about ids its own pack lacks).
func adminService(st admin.Store) *admin.Service { return admin.New(st, clock.Now, nil) }

// adminCLI opens the data directory's store for one admin command and
// gives it the service and the CLI's actor; done closes the store.
func adminCLI(dir *place, as string, stderr io.Writer) (svc *admin.Service, actor string, done func(), err error) {
	if actor, err = cliActor(as, stderr); err != nil {
		return nil, "", nil, err
	}
	st, err := openExisting(dir, false)
	if err != nil {
		return nil, "", nil, err
	}
	return adminService(st), actor, func() { st.Close() }, nil
}
