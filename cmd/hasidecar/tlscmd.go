package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/internal/pki"
)

// newTLSCmd is `hasidecar tls init|issue|renew`: the cluster's CA and
// certificates, made with crypto/x509 (no openssl needed).
func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make the cluster CA and the node, operator and monitor certificates",
		Long: `Mutual TLS is on by default: every sidecar needs a certificate from the
cluster CA that names it, and every operator or tool one that names its role.

  hasidecar tls init --dir DIR --cluster NAME --node pg1=10.0.0.1 --node pg2=10.0.0.2 --node witness=10.0.0.9
  hasidecar tls issue --dir DIR --node pg4=10.0.0.4        (a new node; or --operator NAME, --monitor NAME)
  hasidecar tls renew --dir DIR --name pg1                 (same identity, new key and lifetime)

Files are written 0600; copy ca.crt and each node's NAME.crt/NAME.key to that
node only, and keep ca.key off the database hosts.`,
	}
	cmd.AddCommand(newTLSInitCmd(), newTLSIssueCmd(), newTLSRenewCmd())
	return cmd
}

func printWritten(cmd *cobra.Command, files []string) {
	for _, f := range files {
		fmt.Fprintln(cmd.OutOrStdout(), "wrote", f)
	}
}

func parseNodes(specs []string) ([]pki.NodeSpec, error) {
	var nodes []pki.NodeSpec
	for _, s := range specs {
		n, err := pki.ParseNodeSpec(s)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

func days(d int) time.Duration { return time.Duration(d) * 24 * time.Hour }

func newTLSInitCmd() *cobra.Command {
	var o pki.InitOptions
	var nodes []string
	var caDays, leafDays int
	cmd := &cobra.Command{
		Use:   "init --dir DIR --cluster NAME --node NAME=ADDRESS[,ADDRESS] ...",
		Short: "Make a cluster CA, a certificate per node, an operator and a monitor certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Cluster == "" {
				return errors.New("--cluster is required: the cluster: name in every node's config")
			}
			var err error
			if o.Nodes, err = parseNodes(nodes); err != nil {
				return err
			}
			o.CADays, o.LeafDays = days(caDays), days(leafDays)
			files, err := pki.Init(o)
			printWritten(cmd, files)
			return err
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", "", "directory to write into (created 0700; must not hold a CA yet)")
	cmd.Flags().StringVar(&o.Cluster, "cluster", "", "the cluster's name (cluster: in the configs)")
	cmd.Flags().StringArrayVar(&nodes, "node", nil, "a node and the addresses its peers dial: NAME=IP[,IP|HOST...] (repeat for every sidecar, witnesses too)")
	cmd.Flags().StringSliceVar(&o.Operators, "operator", []string{pki.DefaultOperator}, "names of operator certificates (every verb)")
	cmd.Flags().StringSliceVar(&o.Monitors, "monitor", []string{pki.DefaultMonitor}, "names of monitor certificates (read verbs only)")
	cmd.Flags().IntVar(&caDays, "ca-days", int(pki.DefaultCAValidity/(24*time.Hour)), "lifetime of the CA in days")
	cmd.Flags().IntVar(&leafDays, "days", int(pki.DefaultLeafValidity/(24*time.Hour)), "lifetime of each certificate in days")
	return cmd
}

func newTLSIssueCmd() *cobra.Command {
	var dir, operator, monitor string
	var nodes []string
	var leafDays int
	cmd := &cobra.Command{
		Use:   "issue --dir DIR (--node NAME=ADDRESS | --operator NAME | --monitor NAME)",
		Short: "Sign one more certificate with the CA in DIR (a new node, a new operator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--dir is required: the directory `hasidecar tls init` wrote")
			}
			ns, err := parseNodes(nodes)
			if err != nil {
				return err
			}
			if len(ns) == 0 && operator == "" && monitor == "" {
				return errors.New("say what to issue: --node NAME=ADDRESS, --operator NAME or --monitor NAME")
			}
			for _, n := range ns {
				files, err := pki.IssueOne(dir, pki.RoleNode, n.Name, n.Addrs, days(leafDays), time.Now())
				printWritten(cmd, files)
				if err != nil {
					return err
				}
			}
			for _, c := range []struct {
				role pki.Role
				name string
			}{{pki.RoleOperator, operator}, {pki.RoleMonitor, monitor}} {
				if c.name == "" {
					continue
				}
				if !pki.ValidName(c.name) {
					return fmt.Errorf("--%s %q: use letters, digits, '.', '_' or '-'", c.role, c.name)
				}
				files, err := pki.IssueOne(dir, c.role, c.name, nil, days(leafDays), time.Now())
				printWritten(cmd, files)
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the directory `hasidecar tls init` wrote (holds ca.crt and ca.key)")
	cmd.Flags().StringArrayVar(&nodes, "node", nil, "a new node: NAME=IP[,IP|HOST...]")
	cmd.Flags().StringVar(&operator, "operator", "", "a new operator certificate NAME")
	cmd.Flags().StringVar(&monitor, "monitor", "", "a new monitor (read-only) certificate NAME")
	cmd.Flags().IntVar(&leafDays, "days", int(pki.DefaultLeafValidity/(24*time.Hour)), "lifetime in days")
	return cmd
}

func newTLSRenewCmd() *cobra.Command {
	var dir string
	var names []string
	var leafDays int
	cmd := &cobra.Command{
		Use:   "renew --dir DIR --name NAME [--name NAME ...]",
		Short: "Re-issue certificates with the same identity and addresses (sidecars reload them without a restart)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || len(names) == 0 {
				return errors.New("--dir and --name are required: which certificate in which `tls init` directory")
			}
			for _, name := range names {
				files, err := pki.Renew(dir, name, days(leafDays), time.Now())
				printWritten(cmd, files)
				if err != nil {
					return err
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "copy the new files to their hosts; each sidecar loads them within 30 s (or at once on SIGHUP)")
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the directory `hasidecar tls init` wrote")
	cmd.Flags().StringArrayVar(&names, "name", nil, "the certificate to renew (node, operator or monitor name); repeat for several")
	cmd.Flags().IntVar(&leafDays, "days", int(pki.DefaultLeafValidity/(24*time.Hour)), "new lifetime in days")
	return cmd
}
