package plugin

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRmCommand(o *Options) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:     "rm WUKONG:/path...",
		Short:   "Remove files or directories inside a VM",
		Example: "  kubectl wukong rm vm1:/tmp/old.log\n  kubectl wukong rm -r vm1:/tmp/build",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				r, err := mustRemote(a)
				if err != nil {
					return err
				}
				fc, err := o.client(r)
				if err != nil {
					return err
				}
				if err := fc.Delete(cmd.Context(), r.path, recursive); err != nil {
					return fmt.Errorf("%s: %w", r, explain(err))
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove a directory and everything under it")
	return cmd
}
