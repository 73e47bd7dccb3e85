package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/image"
	"github.com/msb-go/msb/internal/store"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func init() { commands = append(commands, newRegistryCmd) }

// registryFlags are the per-command registry settings, added to those of
// the environment (image.EnvOptions).
type registryFlags struct {
	insecure bool
	caFiles  []string
}

func (f *registryFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "allow plain HTTP (and unverified TLS) to this image's registry")
	cmd.Flags().StringArrayVar(&f.caFiles, "ca-certs", nil, "extra PEM CA file to trust for registries (repeatable)")
}

// openImages opens the image store of the msb home with the environment's
// registry options plus f (nil for none); insecureRef names the reference
// whose registry --insecure applies to. close releases the database.
func openImages(ctx context.Context, f *registryFlags, insecureRef string) (*image.Store, func(), error) {
	opts, err := image.EnvOptions()
	if err != nil {
		return nil, nil, err
	}
	if f != nil {
		opts.CAFiles = append(opts.CAFiles, f.caFiles...)
		if f.insecure && insecureRef != "" {
			r, err := image.ParseReference(insecureRef)
			if err != nil {
				return nil, nil, err
			}
			opts.Insecure = append(opts.Insecure, r.Registry)
		}
	}
	h, err := home.Resolve()
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, h.DBPath())
	if err != nil {
		return nil, nil, err
	}
	return image.Open(h, st, opts), func() { st.Close() }, nil
}

func newRegistryCmd(stdio Stdio) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Manage registry logins",
		Long: `Save, remove and list registry credentials. Pulls use them first, then Docker's
config (~/.docker/config.json) and credential helpers, then anonymous access.
Credentials are stored in $MSB_HOME/secrets/registries/ with mode 0600.`,
	}
	cmd.AddCommand(newRegistryLoginCmd(stdio), newRegistryLogoutCmd(stdio), newRegistryLsCmd(stdio))
	return cmd
}

func newRegistryLoginCmd(stdio Stdio) *cobra.Command {
	var user string
	var stdinPassword bool
	var rf registryFlags
	cmd := &cobra.Command{
		Use:   "login REGISTRY -u USER [--password-stdin]",
		Short: "Check and save credentials for a registry",
		Long: `Check USER's password against REGISTRY and save both for later pulls. The
password is read from standard input (one line), never from the command line;
on a terminal it is prompted for without echo.

  echo "$TOKEN" | msb registry login ghcr.io -u me --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return errors.New("give the user name with -u USER")
			}
			pass, err := readPassword(stdio, stdinPassword)
			if err != nil {
				return err
			}
			imgs, closeFn, err := openImages(cmd.Context(), &rf, args[0]+"/x")
			if err != nil {
				return err
			}
			defer closeFn()
			if err := imgs.Login(cmd.Context(), args[0], user, pass); err != nil {
				return err
			}
			fmt.Fprintf(stdio.Out, "Login Succeeded (%s)\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name")
	cmd.Flags().BoolVar(&stdinPassword, "password-stdin", false, "read the password from standard input (the default when stdin is not a terminal)")
	rf.register(cmd)
	return cmd
}

// readPassword reads one line from stdin, without echo on a terminal.
func readPassword(stdio Stdio, fromStdin bool) (string, error) {
	if f, ok := stdio.In.(*os.File); ok && !fromStdin && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stdio.Err, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stdio.Err)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdio.In, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input")
	}
	return line, nil
}

func newRegistryLogoutCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "logout REGISTRY",
		Short: "Forget the saved credentials for a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, closeFn, err := openImages(cmd.Context(), nil, "")
			if err != nil {
				return err
			}
			defer closeFn()
			if err := imgs.Logout(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdio.Out, "Removed login for %s\n", args[0])
			return nil
		},
	}
}

func newRegistryLsCmd(stdio Stdio) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List saved registry logins (no passwords)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			imgs, closeFn, err := openImages(cmd.Context(), nil, "")
			if err != nil {
				return err
			}
			defer closeFn()
			logins, err := imgs.Logins()
			if err != nil {
				return err
			}
			if format == "json" {
				if logins == nil {
					logins = []image.Login{}
				}
				return writeJSON(stdio.Out, logins)
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REGISTRY\tUSERNAME")
			for _, l := range logins {
				fmt.Fprintf(tw, "%s\t%s\n", l.Registry, l.Username)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}
