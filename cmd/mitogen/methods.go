package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// cmdMethods lists the registered connection methods.
func cmdMethods(w io.Writer) int {
	for _, m := range transport.Default.Methods() {
		fmt.Fprintf(w, "%-50s %s\n", m.Syntax, m.Summary)
		if m.NewOptions == nil {
			continue
		}
		var keys []string
		for _, o := range transport.DescribeOptions(m.NewOptions()) {
			k := o.Key + " (" + o.Type
			if o.Secret {
				k += ", secret"
			}
			keys = append(keys, k+")")
		}
		if len(keys) > 0 {
			fmt.Fprintf(w, "    options: %s\n", strings.Join(keys, ", "))
		}
	}
	fmt.Fprintln(w, "\nSet any option for every hop of a kind with --hop-option KIND.KEY=VALUE.")
	return 0
}
