package fakessh

// SSHMain is the body of fakessh's ssh.
func SSHMain(args []string) int { return 255 }
