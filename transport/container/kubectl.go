package container

import (
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// KubectlOptions are the kubectl settings of a hop.
type KubectlOptions struct {
	// Container is the pod's container (kubectl exec --container).
	Container string `opt:"container"`
	// Namespace is the pod's namespace (kubectl --namespace).
	Namespace string `opt:"namespace"`
	// Kubeconfig is the kubeconfig file (kubectl --kubeconfig), a path on
	// the host where kubectl runs.
	Kubeconfig string `opt:"kubeconfig"`
	// Context is the kubeconfig context (kubectl --context).
	Context string `opt:"context"`
	// Args are extra kubectl arguments before "exec".
	Args []string `opt:"args"`
	// CacheDir overrides the agent cache directory inside the pod.
	CacheDir string `opt:"cache_dir"`
	// Program is the kubectl binary (default "kubectl").
	Program string `opt:"program"`
}

// Validate checks the options.
func (o *KubectlOptions) Validate() error { return checkArgs(o.Args) }

// Kubectl is the "kubectl" connection method:
//
//	kubectl [--kubeconfig=F] [--context=C] [--namespace=N] [ARGS...] exec --stdin [--container=C] POD -- /bin/sh -c SCRIPT
//
// (no --tty: a terminal would mangle the stream).
var Kubectl = transport.Method{
	Kind:       transport.KindKubectl,
	Syntax:     "kubectl:pod",
	Summary:    "a running Kubernetes pod, with kubectl exec",
	Parse:      parseContainer(transport.KindKubectl, false),
	NewOptions: func() any { return new(KubectlOptions) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		o := opts.(*KubectlOptions)
		argv := []string{program(o.Program, "kubectl")}
		if o.Kubeconfig != "" {
			argv = append(argv, "--kubeconfig="+o.Kubeconfig)
		}
		if o.Context != "" {
			argv = append(argv, "--context="+o.Context)
		}
		if o.Namespace != "" {
			argv = append(argv, "--namespace="+o.Namespace)
		}
		argv = append(append(argv, o.Args...), "exec", "--stdin")
		if o.Container != "" {
			argv = append(argv, "--container="+o.Container)
		}
		argv = append(argv, spec.Host, "--")
		return &Exec{Name: spec.String(), Argv: argv, CacheDir: o.CacheDir, Agent: agent, Failures: commonFailures}, nil
	},
}

func init() { transport.Register(Kubectl) }
